"""One file drives both halves: the device plugin's resource list derived from a node policy.

Each policy with a `resourceName` feeds that pool exactly the VFs it provisions: for every PF its
`nicSelector` matches, a `rootDevices` entry ``<PF address>#<its VF range>`` (PCI addresses do not
change when interfaces are renamed), plus `drivers: ["vfio-pci"]` for a vfio-pci policy. Several
policies naming one resource become one resource with a selector each.

A pool is withheld while any PF behind it still has plan steps outstanding: advertising first and
rebinding drivers afterwards would pull VFs out from under pods the kubelet placed in between.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from sriovkit.host.model import VFIO_DRIVER, HostSnapshot
from sriovkit.provision.plan import Plan, selects
from sriovkit.provision.policy import DeviceType, NodePolicy, Policy
from sriovkit.resources.config import (
    DEFAULT_RESOURCE_PREFIX,
    IndexedName,
    ResourceConfig,
    ResourceList,
    Selector,
)


def resources_from_policy(policy: Policy, snapshot: HostSnapshot, *,
                          default_prefix: str = DEFAULT_RESOURCE_PREFIX, source: str = "<policy>") -> ResourceList:
    """The resource list a device plugin should serve for `policy` on this host, in policy order."""
    selectors: dict[str, list[Selector]] = {}
    for rule in policy.policies:
        if rule.resource_name is None:
            continue
        found = selectors.setdefault(rule.resource_name, [])
        selector = _selector_for(rule, snapshot)
        if selector is not None:
            found.append(selector)
    resources = tuple(
        ResourceConfig(resource_name=name, resource_prefix=default_prefix,
                       selectors=tuple(found) if found else (_NOTHING,))
        for name, found in selectors.items()
    )
    return ResourceList(resources, source)


def pools_pending(policy: Policy, snapshot: HostSnapshot, plan: Plan, *,
                  default_prefix: str = DEFAULT_RESOURCE_PREFIX) -> frozenset[str]:
    """Full names of the resources not to advertise yet: some PF behind them still has steps to run."""
    busy_pfs = {step.pf_address for step in plan.steps}
    pending: set[str] = set()
    for rule in policy.policies:
        if rule.resource_name is not None and busy_pfs.intersection(_matched_pfs(rule, snapshot)):
            pending.add(f"{default_prefix}/{rule.resource_name}")
    return frozenset(pending)


# A selector no device passes: a pool whose policy matches no PF is advertised empty rather than
# falling back to the empty selector, which would take every device on the node.
_NOTHING = Selector(pci_addresses=("ffff:ff:ff.7",))


def withhold(resources: ResourceList, names: frozenset[str]) -> ResourceList:
    """The same resources with those in `names` emptied: still registered, offering no device."""
    return ResourceList(tuple(dataclasses.replace(r, selectors=(_NOTHING,)) if r.full_name in names else r
                              for r in resources.resources), resources.source)


def _selector_for(rule: NodePolicy, snapshot: HostSnapshot) -> Selector | None:
    roots = tuple(entry for address, netdev in _matched_pf_names(rule, snapshot)
                  if (entry := _root_entry(rule, address, netdev)) is not None)
    if not roots:
        return None
    drivers = (VFIO_DRIVER,) if rule.device_type is DeviceType.VFIO_PCI else ()
    return Selector(root_devices=roots, drivers=drivers)


def _root_entry(rule: NodePolicy, pf_address: str, pf_netdev: str | None) -> IndexedName | None:
    indexes = rule.vf_range(pf_netdev)
    if indexes is None:
        indexes = frozenset(range(rule.num_vfs))
    claimed = frozenset(i for i in indexes if i < rule.num_vfs)
    return IndexedName(pf_address, claimed) if claimed else None


def _matched_pf_names(rule: NodePolicy, snapshot: HostSnapshot) -> Iterable[tuple[str, str | None]]:
    return [(pf.pci_address, pf.netdev) for pf in snapshot.physical_functions() if selects(rule.nic_selector, pf)]


def _matched_pfs(rule: NodePolicy, snapshot: HostSnapshot) -> set[str]:
    return {address for address, _ in _matched_pf_names(rule, snapshot)}
