"""Scenario 1 (discovery and pools on real igb/igbvf sysfs), the discovery half of scenario 5
(a vfio-pci bound VF) and the pools half of scenario 7 (two PFs split by pfNames).

The guest (guest/discovery.sh) enables 4 VFs on eth0 and 3 on eth1, records the kernel's view and
what sriovctl reports, then binds eth0 VF 3 and eth1 VF 0 to vfio-pci and records again.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.vmlab(guest="discovery", nics=2)

IGB_VENDOR, IGB_PF_DEVICE, IGB_VF_DEVICE = "8086", "10c9", "10ca"


def _by_address(discovered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["pciAddress"]: d for d in discovered}


def _numa(raw: str) -> int | None:
    return None if int(raw) < 0 else int(raw)


def test_guest_script_completed(guest):
    assert guest.returncode == 0


def test_kernel_made_the_vfs(guest):
    step = guest.step("vfs")
    _, eth0 = step.pf("eth0")
    assert (eth0["sriov_numvfs"], len(eth0["virtfn"])) == ("4", 4)
    assert len(step.links["eth0"]["vfinfo_list"]) == 4
    assert len(step.links["eth1"]["vfinfo_list"]) == 3
    for vf in step.vf_addresses("eth0"):
        assert step.sysfs[vf]["driver"] == "igbvf"
        assert len(step.sysfs[vf]["net"]) == 1


def test_discover_reports_the_real_pf(guest):
    step = guest.step("vfs")
    address, raw = step.pf("eth0")
    pf = _by_address(step.command("discover").json())[address]
    assert pf["vendor"] == IGB_VENDOR and pf["device"] == IGB_PF_DEVICE
    assert pf["driver"] == raw["driver"] == "igb"
    assert pf["totalVfs"] == int(raw["sriov_totalvfs"]) == 7
    assert pf["numVfs"] == 4
    assert pf["vfs"] == step.vf_addresses("eth0")
    assert pf["netdevs"] == ["eth0"]
    assert pf["iommuGroup"] == raw["iommu_group"]


def test_discover_reports_each_vf_as_the_kernel_does(guest):
    step = guest.step("vfs")
    pf_address, _ = step.pf("eth0")
    discovered = _by_address(step.command("discover").json())
    groups = set()
    for index, address in enumerate(step.vf_addresses("eth0")):
        raw, vf = step.sysfs[address], discovered[address]
        assert (vf["vendor"], vf["device"]) == (IGB_VENDOR, IGB_VF_DEVICE)
        assert vf["driver"] == raw["driver"] == "igbvf"
        assert (vf["pfAddress"], vf["pfName"], vf["vfIndex"]) == (pf_address, "eth0", index)
        assert vf["netdevs"] == raw["net"]
        assert vf["iommuGroup"] == raw["iommu_group"] is not None
        assert vf["numaNode"] == _numa(raw["numa_node"])
        groups.add(vf["iommuGroup"])
    assert len(groups) == 4, "each igbvf VF sits in its own IOMMU group"


def test_numa_node_minus_one_is_reported_as_none(guest):
    step = guest.step("vfs")
    address, raw = step.pf("eth0")
    assert raw["numa_node"] == "-1", "the lab's q35 machine has no NUMA: the kernel says -1"
    assert _by_address(step.command("discover").json())[address]["numaNode"] is None


def test_pfnames_range_selects_exactly_vfs_0_to_2(guest):
    step = guest.step("vfs")
    pools = step.command("pools-eth0-0-2").json()
    assert pools == {"intel.com/igbvf_eth0": sorted(step.vf_addresses("eth0")[:3])}


def test_pools_split_by_pf_names_across_two_pfs(guest):
    step = guest.step("vfs")
    pools = step.command("pools-split").json()
    assert pools == {
        "intel.com/igbvf_eth0": sorted(step.vf_addresses("eth0")),
        "intel.com/igbvf_eth1": sorted(step.vf_addresses("eth1")[1:3]),
        "intel.com/igb_vfio": [],
    }


def test_vfio_bound_vf_shows_with_its_vfio_group(guest):
    step = guest.step("vfio")
    discovered = _by_address(step.command("discover").json())
    for pf, index in (("eth0", 3), ("eth1", 0)):
        address = step.vf_addresses(pf)[index]
        raw = step.sysfs[address]
        assert raw["driver"] == "vfio-pci" and raw["net"] == []
        assert raw["iommu_group"] in step.vfio_nodes, "the kernel made /dev/vfio/<group>"
        vf = discovered[address]
        assert vf["driver"] == "vfio-pci"
        assert vf["iommuGroup"] == raw["iommu_group"]
        assert vf["netdevs"] == []
        assert (vf["pfName"], vf["vfIndex"]) == (pf, index)
        assert vf["linkType"] == "ether", "a vfio VF reports its PF's link type, as upstream does"


def test_pools_follow_the_driver_rebinding(guest):
    step = guest.step("vfio")
    eth0, eth1 = step.vf_addresses("eth0"), step.vf_addresses("eth1")
    assert step.command("pools-split").json() == {
        "intel.com/igbvf_eth0": sorted(eth0[:3]),
        "intel.com/igbvf_eth1": sorted(eth1[1:3]),
        "intel.com/igb_vfio": sorted([eth0[3], eth1[0]]),
    }
