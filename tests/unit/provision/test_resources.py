"""The device plugin's pools derived from a node policy, and withheld until provisioned."""

from __future__ import annotations

from typing import Any

from sriovkit.provision.apply import apply
from sriovkit.provision.plan import plan
from sriovkit.provision.policy import Policy
from sriovkit.provision.resources import pools_pending, resources_from_policy
from sriovkit.resources.pools import build_pools

PF0 = {"name": "ens1f0", "totalVfs": 8, "numVfs": 0, "vendor": "8086", "device": "10c9", "vfDevice": "10ca",
       "driver": "igb", "vfDriver": "igbvf"}
PF1 = {**PF0, "name": "ens2f0"}


def policy(*rules: dict[str, Any]) -> Policy:
    return Policy.model_validate({"policies": list(rules)})


def rule(name: str, pf_names: list[str], num_vfs: int = 4, **extra: Any) -> dict[str, Any]:
    return {"name": name, "nicSelector": {"pfNames": pf_names}, "numVfs": num_vfs, **extra}


def provisioned(node, pol: Policy):
    apply(plan(pol, node.state()), node.provisioner, node.sysfs, timeout_s=0.5)
    return node.state().snapshot


def vf(node, pf_number: int, index: int) -> str:
    return node.host.vf_address(pf_number, index)


def test_each_policy_feeds_its_pool_exactly_the_vfs_it_provisions(node):
    n = node(PF0)
    pol = policy(rule("dpdk", ["ens1f0#0-1"], resourceName="dpdk", deviceType="vfio-pci"),
                 rule("kernel", ["ens1f0#2-3"], resourceName="kernel"))
    snapshot = provisioned(n, pol)
    pools = build_pools(snapshot, resources_from_policy(pol, snapshot)).as_ids()
    assert pools == {"intel.com/dpdk": [vf(n, 0, 0), vf(n, 0, 1)], "intel.com/kernel": [vf(n, 0, 2), vf(n, 0, 3)]}


def test_one_resource_from_two_policies_on_two_pfs(node):
    n = node(PF0, PF1)
    pol = policy(rule("a", ["ens1f0#0"], num_vfs=2, resourceName="net"),
                 rule("b", ["ens2f0"], num_vfs=1, resourceName="net"))
    snapshot = provisioned(n, pol)
    resources = resources_from_policy(pol, snapshot, default_prefix="example.org")
    assert [r.full_name for r in resources.resources] == ["example.org/net"]
    assert len(resources.resources[0].selectors) == 2
    assert build_pools(snapshot, resources).as_ids() == {"example.org/net": [vf(n, 0, 0), vf(n, 1, 0)]}


def test_a_vfio_pool_does_not_take_a_vf_still_on_its_kernel_driver(node):
    n = node({**PF0, "numVfs": 2})
    pol = policy(rule("dpdk", ["ens1f0"], num_vfs=2, resourceName="dpdk", deviceType="vfio-pci"))
    snapshot = n.state().snapshot
    assert build_pools(snapshot, resources_from_policy(pol, snapshot)).as_ids() == {"intel.com/dpdk": []}


def test_policies_without_a_resource_name_feed_no_pool(node):
    n = node(PF0)
    pol = policy(rule("only-vfs", ["ens1f0"]))
    assert resources_from_policy(pol, provisioned(n, pol)).resources == ()


def test_a_policy_matching_no_pf_yields_an_empty_pool_not_every_device(node):
    n = node({**PF0, "numVfs": 2})
    pol = policy(rule("ghost", ["nosuch0"], resourceName="ghost"))
    snapshot = n.state().snapshot
    assert build_pools(snapshot, resources_from_policy(pol, snapshot)).as_ids() == {"intel.com/ghost": []}


def test_pools_are_withheld_until_their_pfs_are_provisioned(node):
    n = node(PF0, PF1)
    pol = policy(rule("dpdk", ["ens1f0#0-1"], resourceName="dpdk", deviceType="vfio-pci"),
                 rule("other", ["ens2f0"], num_vfs=2, resourceName="other"))
    before = n.state().snapshot
    steps = plan(pol, n.state())
    assert pools_pending(pol, before, steps) == {"intel.com/dpdk", "intel.com/other"}
    apply(steps, n.provisioner, n.sysfs, timeout_s=0.5)
    after = n.state().snapshot
    assert pools_pending(pol, after, plan(pol, n.state())) == frozenset()


def test_only_the_pool_on_the_pf_with_work_left_is_withheld(node):
    n = node({**PF0, "numVfs": 4}, {**PF1, "numVfs": 2})
    pol = policy(rule("dpdk", ["ens1f0#0-1"], resourceName="dpdk", deviceType="vfio-pci"),
                 rule("other", ["ens2f0"], num_vfs=2, resourceName="other"))
    state = n.state()
    assert pools_pending(pol, state.snapshot, plan(pol, state)) == {"intel.com/dpdk"}
