"""IPAM beside the VF's own steps (sriovkit.cni.ipam.INTERFACE_BLIND): host-local runs while the
VF is set up (ADD) and given back (DEL); any other plugin keeps its place, after the move on ADD and
before the VF's steps on DEL, where upstream's plugin runs it. Seen through the fault points: a hook
at the move waits for the plugin's exec to have begun (a wrapper that marks it, then execs the real
host-local), which only a plugin running alongside can do while the call stands still there."""

from __future__ import annotations

import dataclasses
import json
import stat
import time
from pathlib import Path

import pytest

from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import Node, NodeFactory
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root

WAIT_S = 10.0


def _wrapper(bin_dir: Path, name: str, marks: Path, before: str = "") -> None:
    """`name`: records each command it is run for in `marks`, then is the real host-local."""
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "$CNI_COMMAND" >> {marks}\n{before}exec /usr/lib/cni/host-local\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _commands(marks: Path) -> list[str]:
    return marks.read_text().split() if marks.exists() else []


def _began(marks: Path, command: str) -> bool:
    deadline = time.monotonic() + WAIT_S
    while command not in _commands(marks):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _leases(node: Node) -> list[str]:
    return sorted(p.name for p in node.ipam_dir.rglob("*") if p.is_file() and p.name[0].isdigit())


def _run(node: Node, command: str, conf: dict[str, object], pod: str, hook: object) -> tuple[dict[str, object], int]:
    ctx = dataclasses.replace(node.ctx, fault_hook=hook)
    out, code = run_cni(node.env(command, pod), json.dumps(conf).encode(), ctx)
    return (json.loads(out) if out.strip() else {}), code


def test_host_local_runs_while_the_vf_is_set_up_and_while_it_is_given_back(node: Node, netns: NetnsFactory,
                                                                            tmp_path: Path) -> None:
    bin_dir, marks = tmp_path / "bin", tmp_path / "marks"
    bin_dir.mkdir()
    _wrapper(bin_dir, "host-local", marks)
    node.cni_path = f"{bin_dir}:/usr/lib/cni"
    pod, seen = netns(), {}
    conf = node.conf(1, vlan=7, trust="on", ipam=node.host_local())

    def hook(point: str, occurrence: int) -> None:
        if point == "move into pod":  # the VF has just moved; IPAM's answer is not yet taken
            seen["ADD"] = _began(marks, "ADD")
        if point == "move back":
            seen["DEL"] = _began(marks, "DEL")

    out, code = _run(node, "ADD", conf, pod, hook)
    assert code == 0, out
    assert seen["ADD"], "host-local had not begun by the time the VF moved"
    assert [ip["address"] for ip in out["ips"]] == ["10.77.0.2/24"]  # type: ignore[union-attr,index]
    assert pod_link(pod, "net1") is not None and len(_leases(node)) == 1
    out, code = _run(node, "DEL", conf, pod, hook)
    assert code == 0, out
    assert seen["DEL"], "host-local's DEL had not begun by the time the VF moved back"
    assert _leases(node) == [] and pod_link(pod, "net1") is None


def test_any_other_ipam_plugin_keeps_its_place(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    """A plugin not known to ignore the interface (dhcp talks on it) runs after the move on ADD
    and before the VF's steps on DEL."""
    bin_dir, marks = tmp_path / "bin", tmp_path / "marks"
    bin_dir.mkdir()
    _wrapper(bin_dir, "iface-ipam", marks)
    node.cni_path = f"{bin_dir}:/usr/lib/cni"
    pod, seen = netns(), {}
    conf = node.conf(2, vlan=7, ipam={**node.host_local(), "type": "iface-ipam"})

    def hook(point: str, occurrence: int) -> None:
        if point in ("move into pod", "restore vf vlan"):
            seen[point] = _commands(marks)

    out, code = _run(node, "ADD", conf, pod, hook)
    assert code == 0, out
    assert seen["move into pod"] == []  # not begun: it runs once the VF is in the pod
    assert _commands(marks) == ["ADD"]
    out, code = _run(node, "DEL", conf, pod, hook)
    assert code == 0, out
    assert seen["restore vf vlan"] == ["ADD", "DEL"]  # released before the VF's settings were restored
    assert _leases(node) == []


def test_a_refused_vf_setting_waits_for_host_local_and_releases_what_it_allocated(
        node_factory: NodeFactory, netns: NetnsFactory, tmp_path: Path) -> None:
    """The VF's step fails while host-local is still allocating: the rollback waits for its
    answer and releases the address, so nothing is left and no exec outlives the call."""
    node = node_factory(unsupportedVfSettings=["vlan"])
    bin_dir, marks = tmp_path / "bin", tmp_path / "marks"
    bin_dir.mkdir()
    _wrapper(bin_dir, "host-local", marks, before='[ "$CNI_COMMAND" = ADD ] && sleep 0.5\n')
    node.cni_path = f"{bin_dir}:/usr/lib/cni"
    pod = netns()
    out, code = node.run("ADD", node.conf(0, vlan=10, ipam=node.host_local()), pod)
    assert code == 1 and out["code"] == ErrorCode.SETTING_REFUSED and "vlan 10" in out["msg"]
    assert _commands(marks) == ["ADD", "DEL"]  # waited for, then undone, before the answer
    assert _leases(node) == [] and pod_link(pod, "net1") is None


def test_host_local_failing_on_del_keeps_the_record_for_the_next_del(node: Node, netns: NetnsFactory,
                                                                       tmp_path: Path) -> None:
    """DEL gave the VF back but host-local refused: the answer is host-local's error and the
    record stays, so the runtime's next DEL releases the address."""
    bin_dir, marks = tmp_path / "bin", tmp_path / "marks"
    bin_dir.mkdir()
    refuse = tmp_path / "refuse"
    _wrapper(bin_dir, "host-local", marks, before=(
        f'if [ "$CNI_COMMAND" = DEL ] && [ -e {refuse} ]; then cat >/dev/null\n'
        """echo '{"cniVersion":"1.0.0","code":11,"msg":"store busy"}'; exit 1; fi\n"""))
    node.cni_path = f"{bin_dir}:/usr/lib/cni"
    pod = netns()
    conf = node.conf(3, vlan=5, ipam=node.host_local())
    assert node.run("ADD", conf, pod)[1] == 0
    refuse.write_text("")
    out, code = node.run("DEL", conf, pod)
    assert code == 1 and out["code"] == 11 and "store busy" in out["msg"], out
    assert pod_link(pod, "net1") is None  # the VF itself went back
    assert len(_leases(node)) == 1 and any(node.state_dir.glob("c1-net1.json"))
    refuse.unlink()
    assert node.run("DEL", conf, pod)[1] == 0
    assert _leases(node) == [] and not any(node.state_dir.glob("c1-net1.json"))
