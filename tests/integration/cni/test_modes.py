"""DPDK (userspace driver) mode, driver rebinding, and PF passthrough."""

from __future__ import annotations

import os

import pytest

from sriovkit.cni.spec import ErrorCode
from sriovkit.host.discover import discover_device
from tests.support.cni_host import NodeFactory
from tests.support.ipam import ipam_allocations
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory, unique_name

pytestmark = pytest.mark.root


def test_dpdk_vf_is_not_moved_but_its_pf_side_settings_are_applied_and_restored(
        node_factory: NodeFactory, netns: NetnsFactory) -> None:
    node = node_factory(vfDrivers={"0-1": "vfio-pci"})
    pod = netns()
    conf = node.conf(0, vlan=300, spoofchk="off", mac="02:00:00:00:d0:01", ipam=node.host_local())
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert result["interfaces"] == [{"name": "net1", "mac": "02:00:00:00:d0:01", "sandbox": pod}]
    assert result["ips"][0]["address"].startswith("10.77.0.")
    assert pod_link(pod, "net1") is None  # nothing in the pod: the DPDK app owns the device
    settings = node.ctx.netlink.vf_settings(node.pf, 0)
    assert (settings.vlan, settings.spoofchk, settings.mac) == (300, False, "02:00:00:00:d0:01")
    assert len(ipam_allocations(node.ipam_dir)) == 1
    assert node.run("DEL", conf, pod) == (None, 0)


def test_dpdk_result_reports_the_admin_mac_when_no_mac_is_configured(
        node_factory: NodeFactory, netns: NetnsFactory) -> None:
    node = node_factory(vfDrivers={"1": "vfio-pci"})
    node.ctx.netlink.set_vf_mac(node.pf, 1, "02:00:00:00:ad:01")
    try:
        pod = netns()
        result, code = node.run("ADD", node.conf(1), pod)
        assert code == 0 and result["interfaces"][0]["mac"] == "02:00:00:00:ad:01"
        assert node.run("DEL", node.conf(1), pod)[1] == 0
    finally:
        node.ctx.netlink.set_vf_mac(node.pf, 1, "00:00:00:00:00:00")


def test_driver_rebound_for_the_attachment_and_restored(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    node = node_factory(vfDrivers={"0": "vfio-pci"})  # vfio-pci is loaded (some VF uses it)
    pod = netns()
    conf = node.conf(2, driver="vfio-pci", trust="on")
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert discover_device(node.ctx.sysfs, node.vf(2)).driver == "vfio-pci"
    assert node.ctx.netlink.vf_settings(node.pf, 2).trust is True
    assert node.run("DEL", conf, pod) == (None, 0)
    assert discover_device(node.ctx.sysfs, node.vf(2)).driver == "iavf"


def test_failed_bind_records_nothing_and_changes_nothing(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    node = node_factory()
    pod = netns()
    out, code = node.run("ADD", node.conf(2, driver="no_such_drv", vlan=4), pod)
    assert code == 1 and out["code"] == ErrorCode.SETTING_REFUSED and "bind driver no_such_drv" in out["msg"]
    assert discover_device(node.ctx.sysfs, node.vf(2)).driver == "iavf"
    assert list(node.state_dir.glob("*.json")) == []


def test_pf_without_vfs_is_passed_through(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    lone = unique_name("lp", 5)
    node = node_factory(extra_pfs=[{"name": lone, "numVfs": 0, "totalVfs": 0, "address": "0000:30:00.0"}])
    pod = netns()
    conf = {**node.conf(0, mtu=1280, mac="02:00:00:00:0f:0f", ipam=node.host_local()), "deviceID": "0000:30:00.0"}
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    link = pod_link(pod, "net1")
    assert link is not None and link["mtu"] == 1280 and link["address"] == "02:00:00:00:0f:0f"
    assert node.ctx.netlink.find_link(lone) is None
    assert node.run("DEL", conf, pod) == (None, 0)
    back = node.ctx.netlink.find_link(lone)
    assert back is not None and back.mtu != 1280 and back.mac != "02:00:00:00:0f:0f"
    out, code = node.run("ADD", {**conf, "vlan": 5}, pod)
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG and "vlan" in out["details"]
    assert os.path.exists(pod)


def test_vf_256_of_a_pf_with_256_vfs(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    """A PF with 256 VFs: the last VF's settings are read, changed and restored (DPDK mode: no veths needed)."""
    node = node_factory(num_vfs=256, totalVfs=256, vfDrivers={"0-255": "vfio-pci"})
    pod = netns()
    conf = node.conf(255, vlan=255, trust="on", min_tx_rate=1, max_tx_rate=2)
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    settings = node.ctx.netlink.vf_settings(node.pf, 255)
    assert (settings.vf_index, settings.vlan, settings.trust, settings.max_tx_rate) == (255, 255, True, 2)
    assert node.run("DEL", conf, pod) == (None, 0)
