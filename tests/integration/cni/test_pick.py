"""The seeds' CNI mode: the netconf names a PF (`if0`, `master`), the plugin picks a free VF itself."""

from __future__ import annotations

from typing import Any

from sriovkit.cni.pools import pools_path, publish_pools
from sriovkit.cni.spec import ErrorCode
from tests.integration.cni.conftest import Node, NodeFactory, pod_addresses, pod_link
from tests.integration.helpers import NetnsFactory, unique_name


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
