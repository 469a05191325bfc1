"""Turn a host snapshot and a resource list into named pools, and say why.

Semantics follow the upstream device plugin: a device joins at most one pool,
the first resource in list order whose selectors (any of them) take it; a PF
that has VFs and an interface carrying the host's default route are never
offered. Every decision is recorded so `--explain` can answer "why is my pool
empty" without reading code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sriovkit.host.model import HostSnapshot, PciDevice
from sriovkit.resources.config import DeviceType, ResourceConfig, ResourceList
from sriovkit.resources.selectors import Device, Reason, device_id, selector_rejects


@dataclass(frozen=True, slots=True)
class ResourcePool:
    """One extended resource and the devices that back it, in device-ID order."""

    config: ResourceConfig
    devices: tuple[Device, ...]

    @property
    def name(self) -> str:
        return self.config.full_name

    @property
    def device_ids(self) -> list[str]:
        return [device_id(d) for d in self.devices]

    def get(self, dev_id: str) -> Device | None:
        for d in self.devices:
            if device_id(d) == dev_id:
                return d
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened to one device: the pool that took it, or why each pool did not."""

    device_id: str
    pool: str | None
    rejections: tuple[tuple[str, object], ...] = ()  # (resource full name, reason; str() to show)
    excluded: str | None = None  # why no pool may ever take it (PF with VFs, default route)


@dataclass(frozen=True, slots=True)
class PoolSet:
    pools: tuple[ResourcePool, ...]
    verdicts: tuple[Verdict, ...] = field(default=())

    def by_name(self) -> dict[str, ResourcePool]:
        return {p.name: p for p in self.pools}

    def as_ids(self) -> dict[str, list[str]]:
        return {p.name: sorted(p.device_ids) for p in self.pools}


def build_pools(
    snapshot: HostSnapshot, resources: ResourceList, *, default_route_netdevs: Iterable[str] = (),
    pinned: Mapping[str, str] | None = None,
) -> PoolSet:
    """`pinned`: device ID -> the resource that holds it (a prepared DRA claim): it stays in that
    pool whatever its selectors now say (its driver may have been rebound for the claim) and
    joins no other."""
    routed = frozenset(default_route_netdevs)
    pinned = pinned or {}
    taken: dict[str, str] = {}
    members: dict[str, list[Device]] = {r.full_name: [] for r in resources.resources}
    rejections: dict[str, list[tuple[str, Reason]]] = {}
    excluded: dict[str, str] = {}
    for resource in resources.resources:
        for dev in _candidates(snapshot, resource.device_type):
            dev_id = device_id(dev)
            never = _never_offered(dev, routed)
            if never is not None:
                excluded[dev_id] = never
                continue
            reason = _taken_reason(taken.get(dev_id))
            holder = pinned.get(dev_id)
            if reason is None and holder is not None and holder != resource.full_name:
                reason = Reason(_held_by, holder)
            elif reason is None and holder is None:
                reason = _rejected_by_all(resource, dev, snapshot.vhost_net)
            if reason is None:
                taken[dev_id] = resource.full_name
                members[resource.full_name].append(dev)
            else:
                rejections.setdefault(dev_id, []).append((resource.full_name, reason))
    pools = tuple(
        ResourcePool(r, tuple(sorted(members[r.full_name], key=device_id))) for r in resources.resources
    )
    verdicts = tuple(
        Verdict(dev_id, taken.get(dev_id), tuple(rejections.get(dev_id, ())), excluded.get(dev_id))
        for dev_id in _all_ids(snapshot)
    )
    return PoolSet(pools, verdicts)


def _candidates(snapshot: HostSnapshot, device_type: DeviceType) -> list[Device]:
    if device_type is DeviceType.NET_DEVICE:
        return [d for d in snapshot if d.is_network]
    if device_type is DeviceType.ACCELERATOR:
        return [d for d in snapshot if d.is_accelerator]
    return list(snapshot.aux_devices.values())


def _never_offered(dev: Device, routed: frozenset[str]) -> str | None:
    if isinstance(dev, PciDevice) and dev.is_sriov_pf and dev.has_vfs:
        return f"PF with {dev.num_vfs} VFs: its VFs are offered, not the PF"
    for netdev in dev.netdevs:
        if netdev in routed:
            return f"interface {netdev} carries the host's default route"
    return None


def _taken_reason(pool: str | None) -> Reason | None:
    return None if pool is None else Reason(_already_in, pool)


def _held_by(pool: str) -> str:
    return f"held by a prepared DRA claim of {pool}"


def _already_in(pool: str) -> str:
    return f"already in {pool} (an earlier resource)"


def taken_earlier(reason: object) -> bool:
    """A rejection only because an earlier resource in the list took the device (no selector refused it)."""
    return isinstance(reason, Reason) and reason.made_by(_already_in)


def _rejected_by_all(resource: ResourceConfig, dev: Device, vhost_net: bool) -> Reason | None:
    reasons: list[Reason] = []
    for selector in resource.selectors:
        reason = selector_rejects(selector, dev, vhost_net=vhost_net)
        if reason is None:
            return None
        reasons.append(reason)
    if len(reasons) == 1:
        return reasons[0]
    return Reason(_joined, reasons)


def _joined(reasons: list[Reason]) -> str:
    return "; ".join(f"selectors[{i}] {r}" for i, r in enumerate(reasons))


def _all_ids(snapshot: HostSnapshot) -> list[str]:
    return [d.pci_address for d in snapshot] + list(snapshot.aux_devices)
