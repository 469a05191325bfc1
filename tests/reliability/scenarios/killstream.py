"""Kill streams (issue 13 class 9): ADD/DEL streams through the shim while the agent is SIGKILLed
at random moments (not at chosen fault points) and restarted, or left down so the shim falls
back in-process. A DEL that answers success must have given the VF back: each one is checked at
once, the simulated switch's own listing (its sysfs tree) included; at the end every VF is as it
was and nothing is left. Bounded in cycles and in time."""

from __future__ import annotations

import os
import random
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tests.reliability.scenarios.rig import (
    AgentProcess,
    Outcome,
    PodFactory,
    answer,
    execute,
    pods,
    shim_for,
    sim_node,
)
from tests.support.cni_host import Node
from tests.support.leaks import leak_report

DEL_ATTEMPTS = 40


def kill_stream(tmp: Path, *, vfs: int = 4, cycles: int = 6, seed: int = 13, deadline_s: float = 240.0,
                kill_every_s: tuple[float, float] = (0.2, 1.2)) -> Outcome:
    out = Outcome(f"kill stream: {vfs} VFs x {cycles} ADD/DEL, agent SIGKILLed at random")
    rng = random.Random(seed)
    with sim_node(tmp, num_vfs=vfs) as node, pods() as make_pod:
        before = node.views()
        socket_path = tmp / "agent" / "cni.sock"
        shim = shim_for(node, tmp / "bin", socket_path)
        agent = _Agent(node, socket_path)
        stop = threading.Event()
        killer = threading.Thread(target=agent.kill_at_random, args=(stop, random.Random(rng.random()),
                                                                    kill_every_s), daemon=True)
        workers = [threading.Thread(target=_worker, daemon=True,
                                    args=(node, i, cycles, shim, make_pod, before, out, random.Random(rng.random()),
                                          time.monotonic() + deadline_s)) for i in range(vfs)]
        killer.start()
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.join(deadline_s + 120)
        finally:
            stop.set()
            killer.join(30)
            agent.stop()
        if any(w.is_alive() for w in workers):
            out.fail("stream", f"a worker did not finish within {deadline_s:g} s")
        if agent.kills == 0:
            out.fail("stream", "the agent was never killed")
        out.leaks += leak_report(node, before) + _unlisted(node, before)
    out.scenario += f" ({agent.kills} kills)"
    return out


class _Agent:
    """The agent process, SIGKILLed now and then; restarted at once or after a while (the shim
    meanwhile falls back in-process)."""

    def __init__(self, node: Node, socket_path: Path) -> None:
        self.node, self.socket_path = node, socket_path
        self.lock = threading.Lock()
        self.proc: AgentProcess | None = AgentProcess(node, socket_path)
        self.kills = 0

    def kill_at_random(self, stop: threading.Event, rng: random.Random, every: tuple[float, float]) -> None:
        while not stop.wait(rng.uniform(*every)):
            with self.lock:
                if self.proc is not None and self.proc.alive():
                    os.killpg(self.proc.proc.pid, signal.SIGKILL)
                    self.proc.wait_dead()
                    self.proc.stop()
                    self.kills += 1
                    self.proc = None
            if stop.wait(rng.choice([0.0, 0.0, rng.uniform(0.1, 0.8)])):
                return
            with self.lock:
                self.proc = AgentProcess(self.node, self.socket_path)

    def stop(self) -> None:
        with self.lock:
            if self.proc is not None:
                self.proc.stop()
                self.proc = None


def _worker(node: Node, index: int, cycles: int, shim: Path, make_pod: PodFactory, before: dict[int, Any],
            out: Outcome, rng: random.Random, deadline: float) -> None:
    conf = node.conf(index, vlan=100 + index, mac=f"02:00:00:00:6b:{index:02x}", mtu=1400,
                     ipam=node.host_local(subnet=f"10.79.{index}.0/24"))
    for cycle in range(cycles):
        if time.monotonic() > deadline:
            return
        case = f"VF {index} cycle {cycle}"
        out.tried += 1
        pod = make_pod()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               **node.env("ADD", pod, container=f"ks{secrets.token_hex(6)}")}
        execute([str(shim)], env, conf)  # killed mid-call or not: the runtime DELs either way
        time.sleep(rng.uniform(0, 0.2))
        if rng.random() < 0.25:
            PodFactory.remove(pod)  # the pod's namespace gone before the runtime's DEL
        _delete_until_done(node, index, shim, {**env, "CNI_COMMAND": "DEL"}, conf, before, out, case)
        PodFactory.remove(pod)


def _delete_until_done(node: Node, index: int, shim: Path, env: dict[str, str], conf: dict[str, Any],
                       before: dict[int, Any], out: Outcome, case: str) -> None:
    for _ in range(DEL_ATTEMPTS):
        stdout, code = execute([str(shim)], env, conf)
        if code == 0:
            problems = _unlisted(node, before, only=index)
            view = _view(node, index)
            if view != before[index]:
                problems.append(f"VF {index} is {view}, was {before[index]}")
            if problems:
                out.fail(case, "DEL answered success for a VF not given back: " + "; ".join(problems))
            return
        if answer(stdout).get("code") not in (11, None):  # try again (agent died mid-call), or killed shim
            out.fail(case, f"DEL answered {code} {stdout[:200]!r}")
        time.sleep(0.1)
    out.fail(case, f"DEL did not succeed in {DEL_ATTEMPTS} attempts")


def _view(node: Node, index: int) -> tuple[Any, ...]:
    v = node.view(index)
    link = (v.link.name, v.link.mac, v.link.mtu, v.link.up) if v.link else None
    return (v.netdev, link, v.settings)


def _unlisted(node: Node, before: dict[int, Any], only: int | None = None) -> list[str]:
    """VFs the simulated switch's tree (its sysfs `net/` entries) does not list under their names."""
    problems = []
    for i in before if only is None else [only]:
        net = node.host.root / "sys" / "bus" / "pci" / "devices" / node.vf(i) / "net"
        listed = sorted(os.listdir(net)) if net.is_dir() else []
        if listed != [before[i][0]]:
            problems.append(f"VF {i} listed by the switch as {listed}, not [{before[i][0]!r}]")
    return problems
