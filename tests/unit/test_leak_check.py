"""The one leak check (tests/support/leaks.py) finds what it is there to find: a record, a held
VF lock, an attachment lock left, an IPAM allocation, a VF not as it was, a process the test
started, a namespace path still there; and nothing on a clean node."""

from __future__ import annotations

import fcntl
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.leaks import host_leaks, host_marks, leak_report


@dataclass
class StandIn:
    """What leak_report reads of a CNI host node (tests/support/cni_host.Node)."""

    state_dir: Path
    ipam_dir: Path
    now: dict[int, tuple[Any, ...]] = field(default_factory=lambda: {0: ("vf0", None, None)})

    def views(self) -> dict[int, tuple[Any, ...]]:
        return self.now


def _node(tmp_path: Path) -> StandIn:
    (tmp_path / "state" / "locks").mkdir(parents=True)
    return StandIn(tmp_path / "state", tmp_path / "ipam")


def test_a_clean_node_has_nothing_to_report(tmp_path: Path) -> None:
    node = _node(tmp_path)
    (node.state_dir / "locks" / "0000:11:00.0.lock").touch()  # a VF lock file nobody holds is fine
    (node.ipam_dir / "net").mkdir(parents=True)
    (node.ipam_dir / "net" / "lock").touch()
    (node.ipam_dir / "net" / "last_reserved_ip.0").touch()
    assert leak_report(node, node.views()) == []  # type: ignore[arg-type]


def test_every_kind_of_leftover_is_one_line(tmp_path: Path) -> None:
    node = _node(tmp_path)
    before = node.views()
    (node.state_dir / "c1-net1.json").write_text("{}")
    (node.state_dir / "c2-net1.pending").write_text("{}")
    (node.state_dir / "locks" / "c1-net1.attach").touch()
    held = node.state_dir / "locks" / "0000:11:00.1.lock"
    fd = os.open(held, os.O_RDWR | os.O_CREAT)
    (node.ipam_dir / "net").mkdir(parents=True)
    (node.ipam_dir / "net" / "10.77.0.2").write_text("c1")
    node.now = {0: ("renamed", None, None)}
    devinfo = tmp_path / "devinfo.json"
    devinfo.write_text("{}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        found = leak_report(node, before, extra_files=(devinfo,))  # type: ignore[arg-type]
    finally:
        os.close(fd)
    assert sorted(found) == sorted([
        "state file c1-net1.json", "state file c2-net1.pending", "lock 0000:11:00.1.lock still held",
        "attachment lock c1-net1.attach", "IPAM allocation net/10.77.0.2", f"file {devinfo}",
        "VF 0: ('vf0', None, None) became ('renamed', None, None)"])


def test_a_process_started_since_the_marks_is_found_until_it_is_gone(tmp_path: Path) -> None:
    marks = host_marks()
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert [line for line in host_leaks(marks) if line.startswith(f"process {child.pid} ")]
    finally:
        child.kill()
        child.wait()
    assert host_leaks(marks) == []
    assert host_leaks(None, netns=[str(tmp_path)]) == [f"netns {tmp_path}"]
    assert host_leaks(None, netns=[str(tmp_path / "gone")]) == []
