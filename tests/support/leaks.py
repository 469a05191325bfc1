"""The one leak check. What a test gives back is checked in two places:

- `leak_report(node, before)`: what the CNI keeps for a node (state records, held locks, `.attach`
  locks, host-local allocations, every VF's name, MAC, MTU, state and PF-side settings), callable
  at any point of a scenario;
- `host_leaks(marks)`: what a rig's teardown must have removed from the host (its interfaces,
  mounts under its directories, the processes started under the test, its network namespaces).

Suites call them through their rig's teardown (`node_factory`, `sim_node`, the `netns` fixture),
so every test that creates things is checked the same way.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyroute2 import IPRoute

from tests.support.ipam import ipam_allocations

if TYPE_CHECKING:
    from tests.support.cni_host import Node

STATE_RECORDS = ("*.json", "*.pending", ".tmp-*")


def leak_report(node: Node, before: dict[int, tuple[Any, ...]], *, extra_files: tuple[Path, ...] = ()) -> list[str]:
    """What the CNI did not give back on `node`, one line each; `before` is `node.views()` from
    before the calls, `extra_files` files that must be gone (device-info files, say)."""
    state = node.state_dir
    found = [f"state file {p.name}" for pattern in STATE_RECORDS for p in state.glob(pattern)]
    lock_dir = state / "locks"
    for lock in sorted(lock_dir.glob("*.lock")) if lock_dir.exists() else []:
        if _held(lock):
            found.append(f"lock {lock.name} still held")
    found += [f"attachment lock {p.name}" for p in sorted(lock_dir.glob("*.attach"))]
    found += [f"IPAM allocation {a}" for a in ipam_allocations(node.ipam_dir)]
    found += [f"file {p}" for p in extra_files if p.exists()]
    after = node.views()
    found += [f"VF {i}: {before[i]} became {after.get(i)}" for i in before if after.get(i) != before[i]]
    return found


def assert_no_leaks(node: Node, before: dict[int, tuple[Any, ...]], **kwargs: Any) -> None:
    found = leak_report(node, before, **kwargs)
    assert found == [], f"left behind: {found}"


def _held(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# -- the host: interfaces, mounts, processes, namespaces --------------------------------------

@dataclass(frozen=True)
class HostMarks:
    """What was on the host when a rig was made, to tell what it made from what it found."""
    processes: frozenset[int]  # our live descendants then


def host_marks() -> HostMarks:
    return HostMarks(frozenset(_live_descendants()))


def host_leaks(marks: HostMarks | None, *, interfaces: Iterable[str] = (), prefixes: Iterable[str] = (),
               dirs: Iterable[Path] = (), netns: Iterable[str] = ()) -> list[str]:
    """What is still on the host after a rig's teardown, one line each: any of its `interfaces`
    or one named with its `prefixes` in the host namespace, a mount under its `dirs`, a process
    started under this test since `marks` (alive, not a zombie; None: not checked), one of its
    `netns` paths."""
    names, starts = set(interfaces), tuple(prefixes)
    with IPRoute() as ipr:
        links = [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]
    found = [f"interface {n}" for n in links if n in names or (starts and n.startswith(starts))]
    found += [f"mount {m}" for m in mounts_under(dirs)]
    if marks is not None:
        found += [f"process {pid} ({_cmdline(pid)})" for pid in sorted(_live_descendants() - marks.processes)]
    found += [f"netns {path}" for path in netns if os.path.exists(path)]
    return found


def mounts_under(dirs: Iterable[Path]) -> list[str]:
    roots = [os.path.realpath(d) for d in dirs]
    if not roots:
        return []
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    return [p for p in points if any(p == r or p.startswith(r + "/") for r in roots)]


def _live_descendants() -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat and stat[0] != "Z":
                parents[int(entry)] = int(stat[1])
    ours, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in ours}
        ours |= frontier
    return ours


def _stat(pid: int) -> list[str] | None:
    """(state, ppid, ...) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "gone"
