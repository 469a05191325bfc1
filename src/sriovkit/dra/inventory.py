"""Which VFs the driver offers: the DRA-served pools of the shared pool set, as slice devices.

The device plugin and the driver split one `build_pools` result by each resource's ``servedBy``,
so a VF is in exactly one pool and offered one way only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sriovkit.dra.slices import VfFacts, device_name, pool_name, vf_facts
from sriovkit.host.model import HostSnapshot, PciDevice
from sriovkit.host.sysfs import Sysfs
from sriovkit.resources.config import ResourceConfig, ServedBy
from sriovkit.resources.pools import ResourcePool


@dataclass(frozen=True, slots=True)
class DraDevice:
    """One VF the driver offers: where it is published and what backs it."""

    pool: str
    name: str
    facts: VfFacts
    resource: ResourceConfig
    healthy: bool = True


def served_by(pools: Mapping[str, ResourcePool], how: ServedBy) -> dict[str, ResourcePool]:
    return {name: pool for name, pool in pools.items() if pool.config.served_by is how}


def pcie_root(sysfs: Sysfs, pci_address: str) -> str:
    """The PCIe root complex (``pci0000:00``): the first directory under sys/devices on the
    device's sysfs path, as Kubernetes' standard pcieRoot attribute defines it."""
    real = os.path.realpath(sysfs.pci_device_dir(pci_address))
    devices = os.path.realpath(os.path.join(sysfs.sys, "devices"))
    if not real.startswith(devices + os.sep):
        return ""
    first = real[len(devices) + 1:].split(os.sep, 1)[0]
    return first if first.startswith("pci") else ""


def dra_devices(node_name: str, snapshot: HostSnapshot, pools: Iterable[ResourcePool],
                health: Mapping[str, bool], sysfs: Sysfs) -> dict[tuple[str, str], DraDevice]:
    """(pool, device name) -> device, for every VF of the given (DRA-served) pools. Only VFs: a
    DRA device is a VF of a PF pool; a PF or an auxiliary device in a DRA resource is skipped."""
    out: dict[tuple[str, str], DraDevice] = {}
    for pool in pools:
        for dev in pool.devices:
            if not isinstance(dev, PciDevice) or dev.pf_address is None:
                continue
            facts = vf_facts(dev, snapshot.get(dev.pf_address), resource_name=pool.name,
                             pcie_root=pcie_root(sysfs, dev.pci_address))
            key = (pool_name(node_name, dev.pf_address), device_name(dev.pci_address))
            out[key] = DraDevice(key[0], key[1], facts, pool.config, health.get(dev.pci_address, True))
    return out
