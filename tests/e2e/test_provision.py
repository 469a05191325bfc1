"""Issue 9 on real VFs: `sriovctl provision` against the igb PF's kernel, step by step.

The guest (guest/provision.sh) applies data/policy-4vfs.yaml (4 VFs, 0-1 on vfio-pci, MTU 1400),
re-applies it, tries data/policy-2vfs.yaml while a pod holds VF 3 (refused), applies it, then
data/policy-2vfs-kernel.json (VF 0 leaves vfio-pci), then tries a change with eth0 carrying the
default route. Every test reads the kernel's view recorded after the step.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.vmlab(guest="provision", nics=2)

DPDK, KERNEL = "vfio-pci", "igbvf"


def _drivers(step, pf="eth0"):
    return [step.sysfs[a]["driver"] for a in step.vf_addresses(pf)]


def _vf_mtus(step, pf="eth0"):
    return [step.links[step.sysfs[a]["net"][0]]["mtu"] for a in step.vf_addresses(pf) if step.sysfs[a]["net"]]


def test_guest_script_completed(guest):
    assert guest.returncode == 0


def test_dry_run_plans_creation_then_binding(guest):
    plan = guest.step("four").command("plan").json()
    assert plan["dryRun"] is True
    changes = [(s["kind"], s["vfIndex"], s["current"], s["target"]) for s in plan["steps"]]
    assert changes == [
        ("sriov_numvfs", None, "0", "4"),
        ("mtu", None, "1500", "1400"),
        ("driver", 0, None, DPDK),
        ("driver", 1, None, DPDK),
        ("mtu", 2, None, "1400"),
        ("mtu", 3, None, "1400"),
    ]
    assert guest.step("start").pf("eth0")[1]["sriov_numvfs"] == "0", "the dry run changed nothing"


def test_four_vfs_two_on_vfio(guest):
    step = guest.step("four")
    address, pf = step.pf("eth0")
    assert pf["sriov_numvfs"] == "4"
    assert len(step.links["eth0"]["vfinfo_list"]) == 4
    assert _drivers(step) == [DPDK, DPDK, KERNEL, KERNEL]
    for vf in step.vf_addresses("eth0")[:2]:
        assert step.sysfs[vf]["net"] == []
        assert step.sysfs[vf]["iommu_group"] in step.vfio_nodes
    assert step.links["eth0"]["mtu"] == 1400
    assert _vf_mtus(step) == [1400, 1400]
    assert step.command("apply").returncode == 0


def test_second_run_changes_nothing_and_says_so(guest):
    again = guest.step("four").command("again")
    assert again.returncode == 0
    assert "nothing to do" in again.stdout


def test_lowering_count_under_an_allocated_vf_is_refused(guest):
    refused = guest.step("refused").command("apply")
    held = guest.step("four").vf_addresses("eth0")[3]
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and held in lines[0] and "sriov_numvfs 4 -> 2" in lines[0], refused.stderr
    before, after = guest.step("four"), guest.step("refused")
    assert after.pf("eth0")[1]["sriov_numvfs"] == "4"
    assert after.vf_addresses("eth0") == before.vf_addresses("eth0")
    assert _drivers(after) == _drivers(before)


def test_lowered_to_two_vfs(guest):
    step = guest.step("two")
    assert step.command("apply").returncode == 0
    assert step.pf("eth0")[1]["sriov_numvfs"] == "2"
    assert len(step.links["eth0"]["vfinfo_list"]) == 2
    assert _drivers(step) == [DPDK, KERNEL]
    assert _vf_mtus(step) == [1400]
    gone = guest.step("four").vf_addresses("eth0")[2:]
    assert not set(gone) & set(step.sysfs), "VFs 2-3 are gone from the bus"


def test_vf_leaving_vfio_range_gets_its_own_driver_back(guest):
    before, step = guest.step("two"), guest.step("restored")
    assert step.command("apply").returncode == 0
    assert step.vf_addresses("eth0") == before.vf_addresses("eth0"), "no VF count change"
    vf0 = step.sysfs[step.vf_addresses("eth0")[0]]
    assert vf0["driver"] == KERNEL and len(vf0["net"]) == 1
    assert vf0["driver_override"] == "(null)", "driver_override cleared"
    assert _vf_mtus(step) == [1400, 1400]
    assert before.sysfs[before.vf_addresses("eth0")[0]]["iommu_group"] not in step.vfio_nodes


def test_default_route_pf_is_left_alone(guest):
    step = guest.step("default-route")
    result = step.command("apply")
    assert result.returncode == 2
    assert "default route" in result.stderr and "eth0" in result.stderr
    assert step.pf("eth0")[1]["sriov_numvfs"] == "2"
    assert _drivers(step) == [KERNEL, KERNEL]


def test_plan_json_is_the_documented_shape(guest):
    plan = guest.step("four").command("plan").json()
    assert set(plan) == {"dryRun", "steps"}
    assert all(set(s) == {"kind", "policy", "pfAddress", "pfName", "vfIndex", "vfAddress", "current", "target"}
               for s in plan["steps"]), json.dumps(plan)
