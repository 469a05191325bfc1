"""7. Soak: the agent's memory, threads and descriptors over thousands of CNI calls, each pod in a
fresh network namespace, as a node churning pods sees them. Growth is judged by slope: RSS per
call in the later windows against the warm-up window, not by an absolute size or any timing."""


from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from sriovkit.shim.client import call_agent
from tests.reliability.scenarios.rig import NETNS_DIR, AgentProcess, Outcome, sim_node
from tests.support.cni_host import Node
from tests.support.leaks import leak_report

# A leak of a fraction of a kilobyte per call is invisible against the steps in which the
# allocator grows its arenas; one that matters over weeks of churn (the 20 KB a call of the
# netlink ACKs kept by pyroute2) is far above this.
GROWTH_PER_CALL_LIMIT_KB = 4.0
# a slope this much lower than the warm-up's means the growth is levelling off
LEVELLING_RATIO = 0.25


@dataclass(frozen=True)
class Sample:
    calls: int
    rss_kb: int
    threads: int
    fds: int


@dataclass
class SoakRun:
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def process_sample(pid: int, calls: int) -> Sample:
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return Sample(calls, rss, len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd")))


def soak_agent(tmp: Path, calls: int, *, window: int = 1000,
               on_sample: Callable[[Sample], None] | None = None) -> tuple[SoakRun, list[str]]:
    """ADD then DEL through a real agent's CNI socket, a fresh netns per pod, `calls` calls in all;
    the agent's RSS, threads and fds sampled after every `window` calls (and at 0). Returns the run
    and what was not given back on the node."""
    run = SoakRun()
    with sim_node(tmp, num_vfs=2) as node:
        before = node.views()
        socket_path = tmp / "agent" / "cni.sock"
        with AgentProcess(node, socket_path) as agent:
            pid = agent.proc.pid
            conf = json.dumps(node.conf(0, vlan=12, mtu=1400, spoofchk="off")).encode()
            done = 0
            while done < calls and not run.failures:
                if done % window == 0:
                    _record(run, process_sample(pid, done), on_sample)
                done += _one_pod(node, socket_path, conf, f"soak{done}", run)
            _record(run, process_sample(pid, done), on_sample)
        leaks = leak_report(node, before)
    return run, leaks


def _record(run: SoakRun, sample: Sample, on_sample: Callable[[Sample], None] | None) -> None:
    run.samples.append(sample)
    if on_sample is not None:
        on_sample(sample)


def _one_pod(node: Node, socket_path: Path, conf: bytes, container: str, run: SoakRun) -> int:
    name = f"sksoak-{secrets.token_hex(5)}"
    pyroute2_netns.create(name)
    path = f"{NETNS_DIR}/{name}"
    try:
        for command in ("ADD", "DEL"):
            env = node.env(command, path, container=container)
            out, code = call_agent(str(socket_path), env, conf, reply_timeout=120)
            if code != 0:
                run.failures.append(f"{command} {container}: {out[:200].decode(errors='replace')}")
                return 2
    finally:
        pyroute2_netns.remove(name)
    return 2


def slope_kb_per_call(samples: list[Sample]) -> float:
    """Least-squares RSS slope over `samples` (KB per call); robust to the allocator's steps."""
    if len(samples) < 2:
        return 0.0
    xs, ys = [s.calls for s in samples], [s.rss_kb for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def growth_verdict(samples: list[Sample], warmup: int) -> str | None:
    """None when memory is bounded: after the first `warmup` samples, RSS grows by less than
    GROWTH_PER_CALL_LIMIT_KB a call, or its slope has fallen well below the warm-up's (levelling
    off). Otherwise why not. Threads and descriptors must not grow at all after the warm-up."""
    early, late = samples[: warmup + 1], samples[warmup:]
    if len(late) < 3:
        return f"too few samples after the warm-up ({len(late)}) to judge growth"
    early_slope, late_slope = slope_kb_per_call(early), slope_kb_per_call(late)
    problems = []
    levelling = early_slope > 0 and late_slope < LEVELLING_RATIO * early_slope
    if late_slope > GROWTH_PER_CALL_LIMIT_KB and not levelling:
        problems.append(f"RSS keeps growing: {late_slope:.2f} KB a call after the warm-up "
                        f"({early_slope:.2f} KB a call during it)")
    for what in ("threads", "fds"):
        first, last = getattr(late[0], what), max(getattr(s, what) for s in late)
        if last > first + 2:
            problems.append(f"{what} grew from {first} to {last} after the warm-up")
    return "; ".join(problems) or None


def memory_soak(tmp: Path, calls: int, *, window: int = 500, warmup: int = 2) -> Outcome:
    """The reliability row: `calls` CNI calls through one agent; a failure when its RSS grows
    without levelling off or threads/fds grow; leaks as for every scenario."""
    out = Outcome(f"soak: agent memory over {calls} CNI calls, a fresh netns per pod")
    run, leaks = soak_agent(tmp, calls, window=window)
    out.tried = run.samples[-1].calls if run.samples else 0
    out.failures += run.failures
    verdict = growth_verdict(run.samples, warmup)
    if verdict is not None:
        out.fail("memory", verdict)
    out.leaks += leaks
    if run.samples:
        first, last = run.samples[0], run.samples[-1]
        out.scenario += (f" (RSS {first.rss_kb / 1024:.1f} -> {last.rss_kb / 1024:.1f} MB, "
                         f"{slope_kb_per_call(run.samples[warmup:]):.2f} KB a call after warm-up)")
    return out
