"""1. Crash at every step: the plugin, the agent and DEL SIGKILLed after each step (fault points of
sriovkit.cni.faults), and state writes killed at random moments."""


from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sriovkit.cni.faults import ENV_KILL_AFTER
from sriovkit.cni.plugin import run_cni
from tests.reliability.scenarios.rig import (
    KILLED,
    PLUGIN,
    AgentProcess,
    Outcome,
    PodFactory,
    answer,
    execute,
    full_conf,
    is_spec_error,
    pods,
    process_env,
    recorded_points,
    shim_for,
    sim_node,
)
from tests.support.cni_host import Node
from tests.support.leaks import leak_report

# -- 1. crash at every step -------------------------------------------------------------------

def crash_add_at_every_step(tmp: Path, *, variants: tuple[str, ...] = ("del", "readd", "netns gone")) -> Outcome:
    """The standalone plugin SIGKILLed after each ADD step; then DEL, or ADD again then DEL, or the
    pod's namespace deleted (the runtime tearing the sandbox down) then DEL at once."""
    out = Outcome("crash: plugin killed after each ADD step")
    return _at_every_point(tmp, out, "ADD", 1, variants, "kill after {point}, then {variant}", _crash_add_case)


_Case = Callable[[Node, str, dict[str, Any], str, str, Outcome, str], None]


def _at_every_point(tmp: Path, out: Outcome, command: str, vf_index: int, variants: tuple[str, ...],
                    label: str, run_case: _Case) -> Outcome:
    """Each of `command`'s fault points x each variant, one fresh pod each, leak-checked after each."""
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        devinfo = node.tmp / "devinfo.json"
        conf = full_conf(node, vf_index, devinfo)
        points = recorded_points(node, make_pod(), conf)[command]
        for point in points:
            for variant in variants:
                out.tried += 1
                case = label.format(point=point, variant=variant)
                pod = make_pod()
                run_case(node, pod, conf, point, variant, out, case)
                make_pod.remove(pod)
                out.leaks += [f"{case}: {leak}" for leak in leak_report(node, before, extra_files=(devinfo,))]
                if out.leaks:
                    return out  # one leak poisons every later case: stop here with a clear report
    return out


def _crash_add_case(node: Node, pod: str, conf: dict[str, Any], point: str, variant: str, out: Outcome,
                    case: str) -> None:
    container = f"k{secrets.token_hex(6)}"
    env = process_env(node, node.env("ADD", pod, container=container), **{ENV_KILL_AFTER: point})
    stdout, code = execute(PLUGIN, env, conf)
    if code != KILLED:
        out.fail(case, f"the plugin was not killed there (exit {code}: {stdout[:200]!r})")
    if variant == "readd":
        again, code = run_cni(node.env("ADD", pod, container=container), json.dumps(conf).encode(), node.ctx)
        if code != 0 and not is_spec_error(again):
            out.fail(case, f"second ADD answered {again[:200]!r}")
    if variant == "netns gone":
        PodFactory.remove(pod)
    stdout, code = run_cni(node.env("DEL", pod, container=container), json.dumps(conf).encode(), node.ctx)
    if (stdout, code) != (b"", 0):
        out.fail(case, f"DEL answered {code} {stdout[:300]!r}")


def crash_del_at_every_step(tmp: Path, *, variants: tuple[str, ...] = ("retry", "netns gone")) -> Outcome:
    """DEL SIGKILLed after each of its steps, then retried (or the pod's namespace deleted first,
    as the runtime tears the sandbox down, then retried): everything given back."""
    out = Outcome("crash: plugin killed after each DEL step, DEL retried")
    return _at_every_point(tmp, out, "DEL", 2, variants, "DEL killed after {point}, then {variant}",
                           _crash_del_case)


def _crash_del_case(node: Node, pod: str, conf: dict[str, Any], point: str, variant: str, out: Outcome,
                    case: str) -> None:
    container = f"d{secrets.token_hex(6)}"
    stdin = json.dumps(conf).encode()
    added, code = run_cni(node.env("ADD", pod, container=container), stdin, node.ctx)
    if code != 0:
        out.fail(case, f"ADD failed: {added[:200]!r}")
    env = process_env(node, node.env("DEL", pod, container=container), **{ENV_KILL_AFTER: point})
    stdout, code = execute(PLUGIN, env, conf)
    if code != KILLED:
        out.fail(case, f"the plugin was not killed there (exit {code}: {stdout[:200]!r})")
    if variant == "netns gone":
        PodFactory.remove(pod)
    stdout, code = run_cni(node.env("DEL", pod, container=container), stdin, node.ctx)
    if (stdout, code) != (b"", 0):
        out.fail(case, f"retried DEL answered {code} {stdout[:300]!r}")


def crash_agent_at_every_step(tmp: Path, *, every: int = 1) -> Outcome:
    """The agent SIGKILLed after each ADD step (every `every`-th point): the shim answers with an
    error and does not repeat the call elsewhere; DEL through the fallback (agent still down), a
    restarted agent, or a restarted agent after the pod's namespace is gone, in turn, gives
    everything back."""
    out = Outcome("crash: agent killed mid-ADD, DEL via fallback / restarted agent / netns gone")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        devinfo = node.tmp / "devinfo.json"
        conf = full_conf(node, 3, devinfo)
        points = recorded_points(node, make_pod(), conf)["ADD"][::every]
        socket_path = tmp / "agent" / "cni.sock"
        shim = shim_for(node, tmp / "bin", socket_path)
        for n, point in enumerate(points):
            recover = ("fallback", "restarted agent", "restarted agent, pod netns gone")[n % 3]
            out.tried += 1
            case = f"agent killed after {point}, DEL via {recover}"
            pod = make_pod()
            _crash_agent_case(node, pod, conf, shim, socket_path, point, recover, out, case)
            make_pod.remove(pod)
            out.leaks += [f"{case}: {leak}" for leak in leak_report(node, before, extra_files=(devinfo,))]
            if out.leaks:
                return out
    return out


def crash_agent_in_del(tmp: Path) -> Outcome:
    """The agent SIGKILLed after each DEL step: the shim answers with an error; the DEL again,
    through the fallback or a restarted agent (alternately), gives everything back."""
    out = Outcome("crash: agent killed mid-DEL, DEL again via fallback / restarted agent")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        devinfo = node.tmp / "devinfo.json"
        conf = full_conf(node, 2, devinfo)
        points = recorded_points(node, make_pod(), conf)["DEL"]
        socket_path = tmp / "agent" / "cni.sock"
        shim = shim_for(node, tmp / "bin", socket_path)
        for n, point in enumerate(points):
            recover = "fallback" if n % 2 == 0 else "restarted agent"
            out.tried += 1
            case = f"agent killed after DEL {point}, DEL again via {recover}"
            pod = make_pod()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   **node.env("ADD", pod, container=f"ad{secrets.token_hex(6)}")}
            with AgentProcess(node, socket_path):
                added, code = execute([str(shim)], env, conf)
            if code != 0:
                out.fail(case, f"ADD answered {added[:200]!r}")
            del_env = {**env, "CNI_COMMAND": "DEL"}
            with AgentProcess(node, socket_path, kill_after=point) as agent:
                stdout, code = execute([str(shim)], del_env, conf)
                if agent.wait_dead() != KILLED:
                    out.fail(case, "the agent was not killed there")
            if code == 0 or "mid-call" not in str(answer(stdout).get("msg")):
                out.fail(case, f"the shim answered {code} {stdout[:200]!r}, not 'agent failed mid-call'")
            if recover == "fallback":
                stdout, code = execute([str(shim)], del_env, conf)
            else:
                with AgentProcess(node, socket_path):
                    stdout, code = execute([str(shim)], del_env, conf)
            if (stdout, code) != (b"", 0):
                out.fail(case, f"DEL again answered {code} {stdout[:300]!r}")
            make_pod.remove(pod)
            out.leaks += [f"{case}: {leak}" for leak in leak_report(node, before, extra_files=(devinfo,))]
            if out.leaks:
                return out
    return out


def _crash_agent_case(node: Node, pod: str, conf: dict[str, Any], shim: Path, socket_path: Path, point: str,
                      recover: str, out: Outcome, case: str) -> None:
    container = f"a{secrets.token_hex(6)}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **node.env("ADD", pod, container=container)}
    with AgentProcess(node, socket_path, kill_after=point) as agent:
        stdout, code = execute([str(shim)], env, conf)
        if agent.wait_dead() != KILLED:
            out.fail(case, "the agent was not killed there")
    data = answer(stdout)
    if code == 0 or data.get("code") != 11 or "mid-call" not in str(data.get("msg")):
        out.fail(case, f"the shim answered {code} {stdout[:200]!r}, not 'agent failed mid-call'")
    del_env = {**env, "CNI_COMMAND": "DEL"}
    if recover.endswith("netns gone"):
        PodFactory.remove(pod)
    if recover == "fallback":
        stdout, code = execute([str(shim)], del_env, conf)
    else:
        with AgentProcess(node, socket_path):
            stdout, code = execute([str(shim)], del_env, conf)
    if (stdout, code) != (b"", 0):
        out.fail(case, f"DEL answered {code} {stdout[:300]!r}")


# -- crash-safe state writes --------------------------------------------------------------------

SAVER = """
import sys
from sriovkit.cni.state import AttachmentRecord, StateStore
store = StateStore(sys.argv[1])
n = 0
while True:
    n += 1
    store.save(AttachmentRecord(container_id="c1", ifname="net1", netns="/x", network="n" * (n % 7 + 1) * 500,
                                pci_address="0000:00:01.0", mode="netdev", config=str(n)))
"""


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Until `path` exists (a loaded machine starts Python slowly), or the process died."""
    deadline = time.monotonic() + timeout_s
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def kill_while_saving(tmp: Path, rounds: int) -> Outcome:
    """A process saving one record in a loop, SIGKILLed at random moments: the record read back is
    always a whole one, never a torn file; no temp file is left once a DEL-like delete ran."""
    from sriovkit.cni.state import StateStore

    out = Outcome("crash: killed while writing state")
    state = tmp / "save-state"
    store = StateStore(str(state))
    for n in range(rounds):
        out.tried += 1
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(state)])
        if n == 0:  # killed before its first save there is nothing to read back: wait for one
            _wait_for(state / "c1-net1.json", proc)
        time.sleep(0.15 + secrets.randbelow(100) / 1000)
        proc.kill()
        proc.wait()
        try:
            record = store.load("c1", "net1")
        except Exception as exc:  # a torn record is exactly what this looks for
            out.fail(f"round {n}", f"record unreadable after the kill: {exc}")
            continue
        if record is None:
            out.fail(f"round {n}", "no record after the kill")
    store.delete("c1", "net1")
    out.leaks += [f"file {p.name}" for p in state.iterdir() if p.is_file()] if state.exists() else []
    return out
