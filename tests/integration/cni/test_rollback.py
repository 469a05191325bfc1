"""Every ADD step made to fail: a clear CNI error naming the step, and nothing left changed.

The fixture's leak check asserts the "nothing changed": VF names, MACs, MTUs and
PF-side settings as before, no state record, no held lock, no IPAM allocation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import Node, NodeFactory
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root

ALL_SETTINGS: dict[str, Any] = {"vlan": 10, "vlanQoS": 1, "mac": "02:00:00:00:0a:0a", "min_tx_rate": 5,
                                "max_tx_rate": 50, "spoofchk": "off", "trust": "on", "link_state": "disable"}


@pytest.mark.parametrize(("refused", "extra", "step"), [
    ("vlan", {}, "vlan 10"),
    ("vlanProto", {"vlanProto": "802.1ad"}, "proto 802.1ad"),
    ("mac", {}, "vf mac"),
    ("maxTxRate", {}, "max_tx_rate 50"),
    ("spoofchk", {}, "spoofchk off"),
    ("trust", {}, "trust on"),
    ("linkState", {}, "link_state disable"),
])
def test_a_refused_vf_setting_undoes_everything(node_factory: NodeFactory, netns: NetnsFactory, refused: str,
                                                 extra: dict[str, Any], step: str) -> None:
    node = node_factory(unsupportedVfSettings=[refused])
    pod = netns()
    out, code = node.run("ADD", node.conf(1, ipam=node.host_local(), **ALL_SETTINGS, **extra), pod)
    assert code == 1
    assert out["code"] == ErrorCode.SETTING_REFUSED
    assert step in out["msg"] and "ADD step" in out["msg"]
    assert out["details"]  # the switch's (kernel's) reason
    assert pod_link(pod, "net1") is None


def test_missing_ipam_plugin(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    out, code = node.run("ADD", node.conf(0, vlan=3, ipam={"type": "no-such-ipam"}), pod)
    assert code == 1 and out["code"] == ErrorCode.IPAM_FAILED
    assert "no-such-ipam" in out["msg"] and "not found" in out["msg"]
    assert pod_link(pod, "net1") is None


def _script(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_failing_ipam_error_is_passed_through(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir, "broken-ipam", """cat >/dev/null
echo '{"cniVersion":"1.0.0","code":11,"msg":"pool exhausted","details":"no free address"}'
exit 1
""")
    node.cni_path = f"{bin_dir}:/usr/lib/cni"
    pod = netns()
    out, code = node.run("ADD", node.conf(2, trust="on", ipam={"type": "broken-ipam"}), pod)
    assert code == 1
    assert out["code"] == 11 and "pool exhausted" in out["msg"] and out["details"] == "no free address"


def test_ipam_without_addresses_is_refused_and_released(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    _script(bin_dir, "empty-ipam", f"""cat >/dev/null
echo "$CNI_COMMAND" >> {log}
echo '{{"cniVersion":"1.0.0"}}'
""")
    node.cni_path = str(bin_dir)
    out, code = node.run("ADD", node.conf(2, ipam={"type": "empty-ipam"}), netns())
    assert code == 1 and out["code"] == ErrorCode.IPAM_FAILED and "no IP address" in out["msg"]
    assert log.read_text().split() == ["ADD"]  # nothing was allocated by the failed step itself


def test_route_failure_after_ipam_releases_the_allocation(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    ipam = node.host_local(routes=[{"dst": "10.50.0.0/16", "gw": "10.200.0.1"}])  # gateway not on link
    out, code = node.run("ADD", node.conf(1, mtu=1400, ipam=ipam), pod)
    assert code == 1 and out["code"] == ErrorCode.SETTING_REFUSED
    assert "add route 10.50.0.0/16" in out["msg"]
    assert pod_link(pod, "net1") is None


@pytest.mark.parametrize("kind", ["missing", "plain-file"])
def test_bad_netns(node: Node, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "netns"
    if kind == "plain-file":
        path.write_text("")
    out, code = node.run("ADD", node.conf(0, vlan=2), str(path))
    assert code == 1 and out["code"] == ErrorCode.UNKNOWN_CONTAINER


def test_ifname_already_taken_in_the_pod(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    ns_name = os.path.basename(pod)
    subprocess.run(["ip", "-n", ns_name, "link", "add", "net1", "type", "veth", "peer", "name", "net1peer"],
                   check=True)
    out, code = node.run("ADD", node.conf(3, spoofchk="off", ipam=node.host_local()), pod)
    assert code == 1 and out["code"] == ErrorCode.SETTING_REFUSED
    assert "move" in out["msg"] and "as net1" in out["msg"]
    assert node.ctx.netlink.device_netdev(node.vf(3)) == node.vf_netdev(3)


def test_unwritable_device_info_file_undoes_ipam_and_move(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    """The path passes the check before any change; the write fails at the end (the directory is
    made a file in between, as a racing process might): every step is undone."""
    pod = netns()
    target = node.devinfo_dir / "cni" / "dev.json"
    conf = node.conf(0, ipam=node.host_local(), runtimeConfig={"CNIDeviceInfoFile": str(target)})

    def block(point: str, occurrence: int) -> None:
        if point == "add address":
            node.devinfo_dir.mkdir(exist_ok=True)
            (node.devinfo_dir / "cni").write_text("")

    ctx = dataclasses.replace(node.ctx, fault_hook=block)
    out, code = run_cni(node.env("ADD", pod), json.dumps(conf).encode(), ctx)
    answer = json.loads(out)
    assert code == 1 and "write device info" in answer["msg"], answer
    assert pod_link(pod, "net1") is None


def test_planted_symlink_in_the_state_dir_is_refused_before_any_change(node: Node, netns: NetnsFactory,
                                                                          tmp_path: Path) -> None:
    node.state_dir.mkdir(mode=0o700)
    planted = tmp_path / "elsewhere.json"
    (node.state_dir / "c1-net1.json").symlink_to(planted)
    pod = netns()
    conf = node.conf(1, vlan=9, ipam=node.host_local())
    try:
        out, code = node.run("ADD", conf, pod)
        assert code == 1 and out["code"] == ErrorCode.IO_FAILURE
        assert "symlink" in out["msg"]
        assert not planted.exists()
        assert pod_link(pod, "net1") is None
    finally:
        (node.state_dir / "c1-net1.json").unlink()
    # the runtime's DEL after a failed ADD: with the planted file gone it finds no record, and
    # removes the attachment lock the refused ADD had to leave (a record-like file was there)
    assert node.run("DEL", conf, pod)[1] == 0


def test_state_dir_that_cannot_be_written_fails_before_any_change(node: Node, netns: NetnsFactory) -> None:
    node.state_dir.mkdir(mode=0o700)
    (node.state_dir / "locks").mkdir(mode=0o700)
    immutable = subprocess.run(["chattr", "+i", str(node.state_dir)], capture_output=True, check=False)
    if immutable.returncode != 0:  # e.g. tmpfs has no immutable flag
        pytest.skip(f"chattr +i unsupported here: {immutable.stderr.decode().strip()}")
    # even root cannot add files to the state dir now
    pod = netns()
    try:
        out, code = node.run("ADD", node.conf(1, vlan=9, ipam=node.host_local()), pod)
        assert code == 1 and out["code"] == ErrorCode.IO_FAILURE
        assert "write journal" in out["msg"]
        assert pod_link(pod, "net1") is None
    finally:
        subprocess.run(["chattr", "-i", str(node.state_dir)], check=True)


def test_final_state_write_failing_undoes_everything(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    """The IPAM step (host-local behind a wrapper) plants a symlink where the record goes: the last step fails."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = node.state_dir / "c1-net1.json"
    _script(bin_dir, "planting-ipam", f"""[ "$CNI_COMMAND" = ADD ] && ln -s /nonexistent {record}
exec /usr/lib/cni/host-local
""")
    node.cni_path = f"{bin_dir}:/usr/lib/cni"
    pod = netns()
    ipam = {**node.host_local(), "type": "planting-ipam"}
    conf = node.conf(1, vlan=9, trust="on", mac="02:00:00:00:09:09", ipam=ipam)
    try:
        out, code = node.run("ADD", conf, pod)
        assert code == 1 and out["code"] == ErrorCode.IO_FAILURE
        assert "save state" in out["msg"] and "symlink" in out["msg"]
        assert pod_link(pod, "net1") is None
    finally:
        record.unlink()
    # the runtime's DEL after the failed ADD removes the attachment lock the planted file kept
    assert node.run("DEL", conf, pod)[1] == 0


def test_nonexistent_device_and_pf_with_vfs(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    out, code = node.run("ADD", {**node.conf(0), "deviceID": "0000:7f:1f.7"}, pod)
    assert code == 1 and out["code"] == ErrorCode.DEVICE_UNUSABLE and "no such PCI device" in out["msg"]
    out, code = node.run("ADD", {**node.conf(0), "deviceID": node.host.pf_address(0)}, pod)
    assert code == 1 and out["code"] == ErrorCode.DEVICE_UNUSABLE and "is a PF with 4 VFs" in out["msg"]
