"""The seeds' CNI mode: the netconf names a PF (`if0`, `master`), the plugin picks a free VF itself."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sriovkit.cni.pools import pools_path, publish_pools
from sriovkit.cni.spec import ErrorCode
from sriovkit.host.discover import discover_device
from tests.support.cni_host import Node, NodeFactory
from tests.support.ipam import ipam_allocations
from tests.support.kernel import pod_addresses, pod_link
from tests.support.names import NetnsFactory, unique_name


def pf_conf(node: Node, key: str = "if0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "seed-net", "type": "sriov", key: node.pf, **extra}


def attached_vf(node: Node, container: str, ifname: str = "net1") -> str:
    record = node.ctx.store.load(container, ifname)
    assert record is not None
    return record.pci_address


def test_two_containers_in_a_row_get_different_free_vfs_lowest_first(node: Node, netns: NetnsFactory) -> None:
    pods = [netns(), netns()]
    conf = pf_conf(node, ipam=node.host_local())
    for i, pod in enumerate(pods):
        result, code = node.run("ADD", conf, pod, container=f"c{i}")
        assert code == 0, result
        assert result["interfaces"][0]["pciID"] == node.vf(i)
        assert pod_link(pod, "net1") is not None and pod_addresses(pod, "net1")
    assert [attached_vf(node, f"c{i}") for i in range(2)] == [node.vf(0), node.vf(1)]
    assert node.view(0).netdev is None and node.view(2).netdev == node.vf_netdev(2)
    for i, pod in enumerate(pods):
        assert node.run("DEL", conf, pod, container=f"c{i}") == (None, 0)
    # the fixture checks every VF is back as it was, no record, lock or address left


def test_master_is_the_later_spelling_and_skips_a_vf_held_by_deviceid(node: Node, netns: NetnsFactory) -> None:
    held, picked = netns(), netns()
    assert node.run("ADD", node.conf(0), held, container="byid")[1] == 0
    result, code = node.run("ADD", pf_conf(node, "master"), picked, container="bypf")
    assert code == 0, result
    assert attached_vf(node, "bypf") == node.vf(1)
    assert node.run("DEL", pf_conf(node, "master"), picked, container="bypf") == (None, 0)
    assert node.run("DEL", node.conf(0), held, container="byid") == (None, 0)


def test_deviceid_wins_over_the_pf(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = {**pf_conf(node), "deviceID": node.vf(3)}
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert attached_vf(node, "c1") == node.vf(3)
    assert node.run("DEL", conf, pod) == (None, 0)


def test_a_pf_with_every_vf_taken_answers_a_clear_error(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    node = node_factory(num_vfs=2)
    pods = [netns(), netns(), netns()]
    for i in range(2):
        assert node.run("ADD", pf_conf(node), pods[i], container=f"c{i}")[1] == 0
    out, code = node.run("ADD", pf_conf(node), pods[2], container="c2")
    assert code == 1 and out["code"] == ErrorCode.DEVICE_UNUSABLE
    assert out["msg"] == f"PF {node.pf}: all 2 VFs are attached"
    assert "container c0 as net1" in out["details"] and "container c1 as net1" in out["details"]
    assert node.ctx.store.load("c2", "net1", pending=True) is None
    for i in range(2):
        assert node.run("DEL", pf_conf(node), pods[i], container=f"c{i}") == (None, 0)


def test_vfs_in_the_agents_pools_are_never_picked(node: Node, netns: NetnsFactory) -> None:
    pool = f"example.com/{unique_name('pool', 4)}"
    publish_pools(pools_path(node.state_dir), {pool: [node.vf(0), node.vf(1), node.vf(3)]})
    try:
        pod = netns()
        result, code = node.run("ADD", pf_conf(node), pod)
        assert code == 0, result
        assert attached_vf(node, "c1") == node.vf(2)
        other = netns()
        out, code = node.run("ADD", pf_conf(node), other, container="c2")
        assert code == 1 and out["code"] == ErrorCode.DEVICE_UNUSABLE
        assert out["msg"] == f"PF {node.pf} has no VF outside the agent's pools" and pool in out["details"]
        assert node.view(0).netdev == node.vf_netdev(0)  # nothing was touched
        assert node.run("DEL", pf_conf(node), pod) == (None, 0)
    finally:
        pools_path(node.state_dir).unlink()


def test_a_pf_without_vfs_named_by_if0_is_passed_through(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    lone = unique_name("lp", 5)
    node = node_factory(extra_pfs=[{"name": lone, "numVfs": 0, "totalVfs": 0, "address": "0000:31:00.0"}])
    pod = netns()
    conf = {"cniVersion": "1.1.0", "name": "pf-net", "type": "sriov", "if0": lone, "ipam": node.host_local()}
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert result["interfaces"][0]["pciID"] == "0000:31:00.0" and pod_addresses(pod, "net1")
    assert node.ctx.netlink.find_link(lone) is None
    assert node.run("DEL", conf, pod) == (None, 0)
    assert node.ctx.netlink.find_link(lone) is not None


def test_an_unknown_pf_is_a_clear_error_and_changes_nothing(node: Node, netns: NetnsFactory) -> None:
    out, code = node.run("ADD", {**pf_conf(node), "if0": "nosuchpf0"}, netns())
    assert code == 1 and out["code"] == ErrorCode.DEVICE_UNUSABLE and "nosuchpf0" in out["msg"]
    out, code = node.run("ADD", {**pf_conf(node), "if0": "../eth0"}, netns())
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG and "if0" in out["details"]


def cni_file(node: Node, pod: str, ifname: str = "net1") -> Path:
    return node.state_dir / os.path.basename(pod) / f"{ifname}.json"


def test_if0name_names_the_pod_interface_and_gc_keeps_it_under_the_runtimes_name(
        node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = pf_conf(node, if0name="vf0", ipam=node.host_local())
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert result["interfaces"][0]["name"] == "vf0"
    assert pod_link(pod, "vf0") is not None and pod_link(pod, "net1") is None and pod_addresses(pod, "vf0")
    gc = {**pf_conf(node), "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "net1"}]}
    assert node.run("GC", gc, "")[1] == 0
    assert pod_link(pod, "vf0") is not None  # the runtime's own name for it is the valid one
    assert node.run("DEL", conf, pod) == (None, 0)
    assert pod_link(pod, "vf0") is None


def test_l2enable_gives_no_ip_and_leaves_the_interface_up(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = pf_conf(node, l2enable=True, ipam=node.host_local())
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert "ips" not in result and pod_addresses(pod, "net1") == set()
    link = pod_link(pod, "net1")
    assert link is not None and "UP" in link["flags"]
    assert ipam_allocations(node.ipam_dir) == []
    assert node.run("DEL", conf, pod) == (None, 0)


def test_dpdk_block_binds_the_dpdk_driver_and_restores_the_kernel_one(
        node_factory: NodeFactory, netns: NetnsFactory) -> None:
    node = node_factory(vfDrivers={"3": "vfio-pci"})  # vfio-pci is loaded (VF 3 uses it)
    pod = netns()
    conf = pf_conf(node, dpdk={"kernel_driver": "iavf", "dpdk_driver": "vfio-pci", "dpdk_tool": "/opt/dpdk-devbind"})
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert discover_device(node.ctx.sysfs, node.vf(0)).driver == "vfio-pci"
    saved = json.loads(cni_file(node, pod).read_text())  # written after the bind succeeded
    assert (saved["pciAddress"], saved["driver"], saved["mode"]) == (node.vf(0), "vfio-pci", "userspace")
    assert node.run("DEL", conf, pod) == (None, 0)
    assert discover_device(node.ctx.sysfs, node.vf(0)).driver == "iavf"
    assert not cni_file(node, pod).exists()


def test_a_failed_bind_writes_no_cni_dir_record(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    out, code = node.run("ADD", pf_conf(node, dpdk={"dpdk_driver": "no_such_drv"}), pod)
    assert code == 1 and "bind driver no_such_drv" in out["msg"]
    assert not (node.state_dir / os.path.basename(pod)).exists()


def test_the_per_namespace_record_exists_during_the_attachment_and_is_gone_after(
        node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    for conf in (pf_conf(node, ipam=node.host_local()), node.conf(2)):  # every mode: picked and deviceID
        result, code = node.run("ADD", conf, pod)
        assert code == 0, result
        saved = json.loads(cni_file(node, pod).read_text())
        record = node.ctx.store.load("c1", "net1")
        assert record is not None and saved["pciAddress"] == record.pci_address
        assert (saved["containerID"], saved["ifname"], saved["netns"]) == ("c1", "net1", pod)
        assert saved["ips"] == record.ips and saved["mac"] == record.pod_mac
        assert node.run("DEL", conf, pod) == (None, 0)
        assert not cni_file(node, pod).parent.exists()


def test_cni_dir_from_the_nad_is_used_only_inside_the_nodes_directories(
        node_factory: NodeFactory, netns: NetnsFactory, tmp_path: Path) -> None:
    node = node_factory()
    allowed = tmp_path / "seeds"
    node.ctx = dataclasses.replace(node.ctx, cni_dirs=(str(allowed),))
    pod = netns()
    conf = pf_conf(node, cniDir=str(allowed / "net-a"))
    assert node.run("ADD", conf, pod)[1] == 0
    assert json.loads((allowed / "net-a" / os.path.basename(pod) / "net1.json").read_text())["containerID"] == "c1"
    assert node.run("DEL", conf, pod) == (None, 0)
    assert not (allowed / "net-a" / os.path.basename(pod)).exists()
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    conf = pf_conf(node, cniDir=str(elsewhere))
    assert node.run("ADD", conf, pod)[1] == 0  # as upstream: it works, the file is not written (warning)
    assert list(elsewhere.iterdir()) == []
    assert node.run("DEL", conf, pod) == (None, 0)


def test_cni_dir_symlinks_and_files_already_there_are_never_followed_or_replaced(
        node_factory: NodeFactory, netns: NetnsFactory, tmp_path: Path) -> None:
    node = node_factory()
    allowed, target = tmp_path / "seeds", tmp_path / "target"
    allowed.mkdir()
    target.mkdir()
    node.ctx = dataclasses.replace(node.ctx, cni_dirs=(str(allowed),))
    pod = netns()
    (allowed / "link").symlink_to(target)
    out, code = node.run("ADD", pf_conf(node, cniDir=str(allowed / "link")), pod)
    assert code == 1 and out["code"] == ErrorCode.IO_FAILURE and "not a plain directory" in out["msg"]
    (allowed / os.path.basename(pod)).symlink_to(target)
    out, code = node.run("ADD", pf_conf(node, cniDir=str(allowed)), pod)
    assert code == 1 and out["code"] == ErrorCode.IO_FAILURE
    assert list(target.iterdir()) == []
    (allowed / os.path.basename(pod)).unlink()
    (allowed / os.path.basename(pod)).mkdir()
    planted = allowed / os.path.basename(pod) / "net1.json"
    planted.write_text('{"containerID": "someone-else"}')
    out, code = node.run("ADD", pf_conf(node, cniDir=str(allowed)), pod)
    assert code == 1 and "already exists" in out["msg"]
    assert planted.read_text() == '{"containerID": "someone-else"}'
    assert node.view(0).netdev == node.vf_netdev(0)  # every step rolled back


@pytest.mark.parametrize("point", ["lock taken", "write cni dir", "save state"])
def test_a_picking_add_killed_mid_way_is_undone_by_del(node: Node, netns: NetnsFactory, point: str) -> None:
    """The standalone plugin SIGKILLs itself at `point`: DEL gives the VF back and removes the
    per-namespace file from what the journal says, and the next pick gets the same VF again."""
    pod = netns()
    conf = pf_conf(node, vlan=42, ipam=node.host_local())
    env = {**node.env("ADD", pod), "SRIOVKIT_HOST_ROOT": str(node.host.root),
           "SRIOVKIT_CNI_STATE_DIR": str(node.state_dir), "SRIOVKIT_FAULT_KILL_AFTER": point,
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.run([sys.executable, "-m", "sriovkit.cni.plugin"], input=json.dumps(conf).encode(),
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    if point != "lock taken":
        assert cni_file(node, pod).exists()
    assert node.run("DEL", conf, pod) == (None, 0)
    assert not cni_file(node, pod).parent.exists()
    assert node.ctx.netlink.vf_settings(node.pf, 0).vlan == 0
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert attached_vf(node, "c1") == node.vf(0)
    assert node.run("DEL", conf, pod) == (None, 0)


def test_a_failed_ipam_after_the_pick_gives_the_vf_back(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    out, code = node.run("ADD", pf_conf(node, ipam={"type": "no-such-ipam"}), pod)
    assert code == 1 and "no-such-ipam" in out["msg"] + out.get("details", "")
    assert node.view(0).netdev == node.vf_netdev(0) and not cni_file(node, pod).parent.exists()


def test_del_with_an_unusable_config_finds_an_attachment_named_by_if0name(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = pf_conf(node, if0name="vf0")
    assert node.run("ADD", conf, pod)[1] == 0
    assert node.run("DEL", {"cniVersion": "1.0.0", "name": "seed-net", "vlan": "x"}, pod) == (None, 0)
    assert pod_link(pod, "vf0") is None and node.view(0).netdev == node.vf_netdev(0)


def test_parallel_picks_never_share_a_vf(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    """Six ADDs race for the four VFs of one PF: four get four different VFs, two are refused."""
    from concurrent.futures import ThreadPoolExecutor

    node = node_factory(num_vfs=4)
    pods = [netns() for _ in range(6)]
    conf = pf_conf(node, ipam=node.host_local())
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: node.run("ADD", conf, pods[i], container=f"p{i}"), range(6)))
    won = [i for i, (_, code) in enumerate(results) if code == 0]
    assert len(won) == 4, results
    assert sorted(attached_vf(node, f"p{i}") for i in won) == sorted(node.vf(i) for i in range(4))
    for i, (out, code) in enumerate(results):
        if code:
            assert out["code"] == ErrorCode.DEVICE_UNUSABLE and node.pf in out["msg"], out
            assert node.ctx.store.load(f"p{i}", "net1", pending=True) is None
    with ThreadPoolExecutor(6) as pool:
        dels = list(pool.map(lambda i: node.run("DEL", conf, pods[i], container=f"p{i}"), range(6)))
    assert dels == [(None, 0)] * 6


def test_check_of_a_picked_attachment_under_its_if0name(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = pf_conf(node, if0name="vf0", mtu=1400, ipam=node.host_local())
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert node.run("CHECK", {**conf, "prevResult": result}, pod) == (None, 0)
    node.ctx.netlink.set_link_mtu("vf0", 1300, pod)  # changed behind the plugin's back
    out, code = node.run("CHECK", {**conf, "prevResult": result}, pod)
    assert code == 1 and out["code"] == ErrorCode.CHECK_FAILED and "vf0" in out["details"] + out["msg"], out
    assert node.run("DEL", conf, pod) == (None, 0)
