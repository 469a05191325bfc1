"""What every CNI command works with, and the step runner ADD is built from.

`Steps.run` does one mutation and registers its undo on an ExitStack; when a
later step fails, the stack undoes every earlier one in reverse order. Undos
are attempted all, each failure logged, and the error reported is the step
that failed, not an undo's.

`Steps.start` runs a step that needs nothing of the steps after it (an IPAM
plugin that never looks at the pod's interface) on a thread of its own while
they run; `Steps.wait` takes its value where the sequence needs it. Its undo is
registered when it starts: undoing first waits for it, then runs only if it
succeeded. Nothing started outlives the call: every undo, and every `wait`,
joins it.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sriovkit.cni.context import CniContext
from sriovkit.cni.env import CniEnv
from sriovkit.cni.faults import FaultPoints
from sriovkit.cni.ipam import IpamCall
from sriovkit.cni.log import EventLog
from sriovkit.cni.netconf import NetConf
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.netlink.errors import NetlinkError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One CNI invocation: the node, the environment, the config, the log."""

    ctx: CniContext
    env: CniEnv
    conf: NetConf
    log: EventLog
    faults: FaultPoints = field(default_factory=FaultPoints)  # test-only kill points (sriovkit.cni.faults)


def ipam_call(call: Call, config: dict[str, Any] | None = None, *, container_id: str | None = None,
              ifname: str | None = None, netns: str | None = None) -> IpamCall:
    """The IPAM exec for this call, or for a recorded attachment's `config` (DEL, GC)."""
    env = call.env
    plugin = str((config.get("ipam") or {}).get("type", "")) if config is not None else call.conf.ipam_type
    return IpamCall(plugin=plugin, search_path=env.path,
                    container_id=container_id or env.container_id, netns=env.netns if netns is None else netns,
                    ifname=ifname or env.ifname, cni_args=env.raw_args,
                    config=config if config is not None else dict(call.conf.raw), caller_root=call.ctx.caller_root)


def refused(step: str, exc: NetlinkError | OSError) -> CniError:
    reason = str(exc) if isinstance(exc, NetlinkError) else (exc.strerror or str(exc))
    return CniError(ErrorCode.SETTING_REFUSED, f"{step} failed", reason)


def run_step(log: EventLog, command: str, step: str, action: Callable[[], T]) -> T:
    """Do one step; a refusal becomes the CNI error naming the command and the step. Not logged
    here: the top of the call (`run_cni`) logs each failure once, with the error it answers."""
    log.debug("step", step=step)
    try:
        return action()
    except (NetlinkError, OSError) as exc:
        raise refused(f"{command} step {step!r}", exc) from None
    except CniError as exc:
        raise CniError(exc.code, f"{command} step {step!r} failed: {exc.msg}", exc.details) from None


class Started(Generic[T]):
    """A step running on a thread of its own (in the caller's log context); `wait()` joins it and
    gives its value or raises what `run_step` raised there."""

    def __init__(self, log: EventLog, command: str, step: str, action: Callable[[], T]) -> None:
        self.step = step
        self._value: T | None = None
        self._error: BaseException | None = None
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run, log, command, step, action),
                                        name=f"step {step}", daemon=True)
        self._thread.start()

    def _run(self, log: EventLog, command: str, step: str, action: Callable[[], T]) -> None:
        try:
            self._value = run_step(log, command, step, action)
        except BaseException as exc:  # handed to whoever waits: the call's own thread
            self._error = exc

    def succeeded(self) -> bool:
        self._thread.join()
        return self._error is None

    def wait(self) -> T:
        if not self.succeeded():
            assert self._error is not None
            raise self._error
        return self._value  # type: ignore[return-value]  # set when no error was


class Steps:
    """Run mutations with their undos; `commit()` once everything succeeded."""

    def __init__(self, log: EventLog, command: str, faults: FaultPoints | None = None) -> None:
        self.log = log
        self.command = command
        self.faults = faults or FaultPoints()
        self.undo = contextlib.ExitStack()
        self._undos = 0

    def __enter__(self) -> Steps:
        self.undo.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # the failure itself is logged once, at the top of the call
            self.log.info("rolling back", undos=self._undos)
        self.undo.__exit__(None, None, None)  # our undos never raise; the original error propagates

    def run(self, step: str, action: Callable[[], T], undo: Callable[[], object] | None = None, *,
            point: str | None = None) -> T:
        """`point`: the step's stable fault-point label (defaults to `step`)."""
        value = run_step(self.log, self.command, step, action)
        if undo is not None:
            self.undo.callback(self._undo, step, undo)
            self._undos += 1
        self.faults.reached(point or step)
        return value

    def start(self, step: str, action: Callable[[], T], undo: Callable[[], object] | None = None) -> Started[T]:
        """`action` on a thread of its own, its undo registered now (see the module's docstring)."""
        started = Started(self.log, self.command, step, action)
        self.undo.callback(self._undo_started, started, undo)
        self._undos += 1
        return started

    def wait(self, started: Started[T], *, point: str | None = None) -> T:
        """The started step's value (or its refusal); the fault point is reached here, in order."""
        value = started.wait()
        self.faults.reached(point or started.step)
        return value

    def commit(self) -> None:
        self.undo.pop_all()
        self._undos = 0

    def _undo_started(self, started: Started[Any], undo: Callable[[], object] | None) -> None:
        if started.succeeded() and undo is not None:
            self._undo(started.step, undo)

    def _undo(self, step: str, undo: Callable[[], object]) -> None:
        try:
            undo()
        except Exception as exc:  # keep undoing the rest: one stuck undo must not strand the others
            self.log.error("undo failed", step=step, reason=str(exc))
        else:
            self.log.info("undone", step=step)
