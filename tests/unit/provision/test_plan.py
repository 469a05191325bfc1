"""Plan computation on simulated hosts: steps, order, and every refusal."""

from __future__ import annotations

from typing import Any

import pytest

from sriovkit.host.model import PciDevice
from sriovkit.provision.plan import KERNEL_DEFAULT, PlanRefused, plan, selects
from sriovkit.provision.policy import NicSelector, Policy

PF = {"name": "ens1f0", "totalVfs": 8, "numVfs": 0, "vendor": "8086", "device": "10c9", "vfDevice": "10ca",
      "driver": "igb", "vfDriver": "igbvf"}


def policy(*rules: dict[str, Any], **top: Any) -> Policy:
    return Policy.model_validate({"policies": list(rules), **top})


def rule(name: str = "p", pf_names: tuple[str, ...] = ("ens1f0",), num_vfs: int = 4, **extra: Any) -> dict[str, Any]:
    return {"name": name, "nicSelector": {"pfNames": list(pf_names)}, "numVfs": num_vfs, **extra}


def changes(p) -> list[tuple[str, int | None, str | None, str]]:
    return [(s.kind.value, s.vf_index, s.current, s.target) for s in p.steps]


def refusal(pol: Policy, state, **kw: Any) -> list[str]:
    with pytest.raises(PlanRefused) as exc:
        plan(pol, state, **kw)
    return exc.value.problems


def test_creates_vfs_then_binds_the_vfio_range(node):
    n = node(PF)
    p = plan(policy(rule("dpdk", ("ens1f0#0-1",), deviceType="vfio-pci"), rule("k", ("ens1f0#2-3",))), n.state())
    assert changes(p) == [("sriov_numvfs", None, "0", "4"), ("driver", 0, None, "vfio-pci"),
                          ("driver", 1, None, "vfio-pci")]
    assert [s.policy for s in p.steps] == ["dpdk", "dpdk", "dpdk"]
    assert all(s.vf_address is None for s in p.steps[1:]), "new VFs have no address before they exist"


def test_changing_a_nonzero_count_goes_through_zero(node):
    n = node({**PF, "numVfs": 4})
    assert changes(plan(policy(rule(num_vfs=2)), n.state())) == [
        ("sriov_numvfs", None, "4", "0"), ("sriov_numvfs", None, "0", "2")]


def test_to_zero_is_one_write(node):
    n = node({**PF, "numVfs": 4})
    assert changes(plan(policy(rule(num_vfs=0)), n.state())) == [("sriov_numvfs", None, "4", "0")]


def test_a_matching_node_needs_nothing(node):
    n = node({**PF, "numVfs": 4, "vfDrivers": {"0-1": "vfio-pci"}})
    pol = policy(rule("dpdk", ("ens1f0#0-1",), deviceType="vfio-pci"), rule("k", ("ens1f0#2-3",)))
    assert not plan(pol, n.state())


def test_vf_leaving_the_vfio_range_gets_its_default_driver_without_recreating(node):
    n = node({**PF, "numVfs": 4, "vfDrivers": {"1-2": "vfio-pci"}})
    vf1 = n.host.vf_address(0, 1)
    p = plan(policy(rule("dpdk", ("ens1f0#2",), deviceType="vfio-pci"), rule("k", ("ens1f0#0-1,3",))), n.state())
    assert changes(p) == [("driver", 1, "vfio-pci", KERNEL_DEFAULT)]
    assert p.steps[0].vf_address == vf1


def test_unclaimed_vfs_are_netdevices(node):
    n = node({**PF, "numVfs": 2, "vfDrivers": {"1": "vfio-pci"}})
    assert changes(plan(policy(rule(pf_names=("ens1f0#0",), num_vfs=2)), n.state())) == [
        ("driver", 1, "vfio-pci", KERNEL_DEFAULT)]


def test_mtu_of_pf_first_then_netdevice_vfs(node):
    n = node({**PF, "numVfs": 2, "vfDrivers": {"0": "vfio-pci"}})
    n.set_mtu("ens1f0", 1500)
    n.set_mtu("ens1f0v1", 1500)
    p = plan(policy(rule("d", ("ens1f0#0",), num_vfs=2, deviceType="vfio-pci"),
                    rule("k", ("ens1f0#1",), num_vfs=2, mtu=9000)), n.state())
    assert changes(p) == [("mtu", None, "1500", "9000"), ("mtu", 1, "1500", "9000")]
    assert p.steps[0].policy == "k"


def test_unselected_pfs_are_left_alone(node):
    n = node(PF, {**PF, "name": "ens2f0", "numVfs": 3})
    p = plan(policy(rule(num_vfs=1)), n.state())
    assert {s.pf_netdev for s in p.steps} == {"ens1f0"}


def test_count_above_totalvfs_is_refused(node):
    n = node(PF)
    assert refusal(policy(rule(num_vfs=9)), n.state()) == [
        "policy p: numVfs 9 is above ens1f0's sriov_totalvfs 8"]


def test_unknown_pf_is_refused_naming_what_is_there(node):
    n = node(PF)
    [problem] = refusal(policy(rule(pf_names=("eth9",))), n.state())
    assert problem.startswith("policy p: nicSelector pfNames=eth9 matches no SR-IOV PF")
    assert "ens1f0 0000:10:00.0 8086:10c9" in problem


def test_vfio_range_needs_the_driver_loaded(node):
    n = node(PF, vfio_loaded=False)
    [problem] = refusal(policy(rule(deviceType="vfio-pci")), n.state())
    assert "vfio-pci driver is not loaded" in problem and "policy p" in problem


def test_conflicting_counts_overlaps_and_ranges_are_all_reported(node):
    n = node(PF)
    problems = refusal(policy(rule("a", ("ens1f0#0-1",)), rule("b", ("ens1f0#1-2",), deviceType="vfio-pci"),
                              rule("c", ("ens1f0#3",), num_vfs=5), rule("d", ("ens1f0#4-6",))), n.state())
    assert problems == [
        "policy b: VF 1 of ens1f0 is already claimed by policy a",
        "policy c: numVfs 5 for ens1f0 conflicts with numVfs 4 from policy a",
        "policy d: pfNames range for ens1f0 names VF 4 but numVfs is 4 (VFs 0-3)",
    ]


def test_lowering_the_count_under_an_allocated_vf_is_refused(node):
    n = node({**PF, "numVfs": 4})
    held = n.host.vf_address(0, 0)
    [problem] = refusal(policy(rule(num_vfs=2)), n.state(), allocated={held})
    assert problem == (f"refusing to change ens1f0 sriov_numvfs 4 -> 2: it removes every VF of ens1f0, "
                       f"and pods hold {held} (vf 0)")


def test_rebinding_an_allocated_vf_is_refused(node):
    n = node({**PF, "numVfs": 2})
    held = n.host.vf_address(0, 1)
    [problem] = refusal(policy(rule(num_vfs=2, deviceType="vfio-pci")), n.state(), allocated={held})
    assert problem.startswith(f"refusing to rebind ens1f0 vf 1 ({held}) from igbvf to vfio-pci")


def test_allocated_vfs_do_not_block_changes_that_keep_them(node):
    n = node({**PF, "numVfs": 2})
    p = plan(policy(rule(pf_names=("ens1f0#1",), num_vfs=2, deviceType="vfio-pci")), n.state(),
             allocated={n.host.vf_address(0, 0)})
    assert changes(p) == [("driver", 1, "igbvf", "vfio-pci")]


def test_default_route_pf_is_refused_unless_allowed(node):
    n = node(PF)
    n.set_default_route("ens1f0")
    [problem] = refusal(policy(rule()), n.state())
    assert "ens1f0 (0000:10:00.0): it carries the node's default route" in problem
    assert "allowDefaultRoutePf" in problem
    assert changes(plan(policy(rule(), allowDefaultRoutePf=True), n.state()))[0] == ("sriov_numvfs", None, "0", "4")


def test_default_route_pf_already_matching_is_fine(node):
    n = node({**PF, "numVfs": 4})
    n.set_default_route("ens1f0")
    assert not plan(policy(rule()), n.state())


@pytest.mark.parametrize(("selector", "taken"), [
    ({"pfNames": ["ens1f0#0-3"]}, True),
    ({"pfNames": ["ens2f0"]}, False),
    ({"rootDevices": ["0000:10:00.0"]}, True),
    ({"vendor": "8086", "deviceID": "10c9"}, True),
    ({"vendor": "8086", "deviceID": "1592"}, False),
    ({"pfNames": ["ens1f0"], "vendor": "15b3"}, False),
])
def test_every_selector_field_given_must_match(selector, taken):
    pf = PciDevice("0000:10:00.0", "8086", "10c9", "020000", netdevs=("ens1f0",), total_vfs=8)
    assert selects(NicSelector.model_validate(selector), pf) is taken

