"""The agent's half of the CNI fast path: `run_cni` behind the shim's socket, timed and counted.

The agent's composition root (`sriovkit.commands.ports.agent_cni_context`) builds one
`CniContext` at start-up from its own flags (host root, state dir) and the agent keeps it: its
netlink sockets stay warm across calls, which is most of what the fast path saves. The
`SRIOVKIT_*` variables a shim forwards do not re-point the agent at another host root or state
dir; `sriovctl install-cni` writes the agent's values into the shim for its fallback path, so both
paths act on the same node and answer with the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sriovkit.agent.metrics import AgentMetrics
from sriovkit.cni.context import CniContext
from sriovkit.cni.plugin import load_commands, run_cni


@dataclass(frozen=True)
class CniService:
    """A `CniHandler` for `sriovkit.shim.server.CniSocketServer`."""

    context: CniContext
    metrics: AgentMetrics | None = None
    # told every call and its answer once it is made (the DRA driver's networkData); must not block
    observers: list[Callable[[Mapping[str, str], bytes, bytes, int], None]] = field(default_factory=list)

    def __call__(self, env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
        start = time.monotonic()
        stdout, code = run_cni(through_caller_root(env, self.context), stdin, self.context)
        if self.metrics is not None:
            self.metrics.observe_cni(env.get("CNI_COMMAND", ""), code, time.monotonic() - start,
                                     error_code=answered_code(stdout) if code else None)
        for observe in self.observers:
            try:
                observe(env, stdin, stdout, code)
            except Exception:  # the answer stands whatever an observer does
                logging.getLogger(__name__).exception("CNI observer %r failed", observe)
        return stdout, code


def through_caller_root(env: Mapping[str, str], context: CniContext) -> Mapping[str, str]:
    """The runtime's CNI_NETNS and CNI_PATH as this agent reaches them (unchanged without a caller root)."""
    if not context.caller_root:
        return env
    changed = dict(env)
    if env.get("CNI_NETNS"):
        changed["CNI_NETNS"] = context.caller_path(env["CNI_NETNS"])
    if env.get("CNI_PATH"):
        changed["CNI_PATH"] = os.pathsep.join(context.caller_path(p) for p in env["CNI_PATH"].split(os.pathsep))
    return changed


def answered_code(stdout: bytes) -> int | None:
    """The `code` of the spec's error JSON a failed call printed (None if it printed none)."""
    try:
        code = json.loads(stdout).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None


class CniWarmUp:
    """An agent component: once started, imports the code of every CNI command on a thread of its
    own, then runs `prepare` (the CNI context's netlink port built: `commands.ports.prepare_cni`),
    so the first pods after the agent starts do not wait for either (on an emulated node the import
    was most of the first ADD's extra seconds; on a node starting many pods at once, every call of
    the first wave waited for the first one's build). A call arriving meanwhile waits only for the
    rest of it (Python's import lock, the port's build lock). A failed `prepare` is logged and left
    to the first call, which tries again and answers with the error."""

    def __init__(self, prepare: Callable[[], None] | None = None) -> None:
        self._thread: threading.Thread | None = None
        self._prepare = prepare

    def start(self) -> None:
        self._thread = threading.Thread(target=self._warm_up, name="cni-warm-up", daemon=True)
        self._thread.start()

    def _warm_up(self) -> None:
        load_commands()
        if self._prepare is None:
            return
        try:
            self._prepare()
        except Exception as exc:  # the first call builds it again and reports what fails
            logging.getLogger(__name__).warning("cni warm-up: preparing netlink failed: %s", exc)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self.join(timeout=5)
