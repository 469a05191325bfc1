"""Which device a deviceID names and how it is attached: a VF's netdev, a VF on a
userspace driver (DPDK: nothing moves), or a PF without VFs (passthrough)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.host.discover import DeviceNotFoundError, discover_device
from sriovkit.host.model import USERSPACE_DRIVERS
from sriovkit.host.sysfs import Sysfs


class Mode(enum.StrEnum):
    NETDEV = "netdev"  # a VF whose kernel interface moves into the pod
    USERSPACE = "userspace"  # a VF on vfio-pci/uio: PF-side settings only, nothing moves
    PF = "pf"  # a PF without VFs: its own interface moves into the pod


@dataclass(frozen=True, slots=True)
class Device:
    pci_address: str
    mode: Mode
    driver: str | None
    netdev: str | None  # the interface in the host namespace (None in userspace mode)
    pf_netdev: str | None = None  # VFs only: the PF whose embedded switch holds the settings
    vf_index: int | None = None
    pf_address: str | None = None  # VFs only: read with the rest, so ADD walks sysfs once


def resolve_device(sysfs: Sysfs, pci_address: str, host_netdev: str | None, *,
                   want_driver: str | None = None) -> Device:
    """Classify `pci_address`. `host_netdev` is its interface as the Netlink port sees it."""
    try:
        dev = discover_device(sysfs, pci_address)
    except DeviceNotFoundError as exc:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"deviceID {pci_address}: no such PCI device", str(exc)) from None
    if not dev.is_vf:
        if dev.has_vfs:
            raise CniError(ErrorCode.DEVICE_UNUSABLE, f"deviceID {pci_address} is a PF with {dev.num_vfs} VFs",
                           "give one of its VFs, or remove the VFs to pass the PF itself through")
        if host_netdev is None:
            raise CniError(ErrorCode.DEVICE_UNUSABLE, f"deviceID {pci_address} has no network interface",
                           f"driver {dev.driver or 'none'}")
        return Device(pci_address, Mode.PF, dev.driver, host_netdev)
    if dev.pf_netdev is None or dev.vf_index is None:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"deviceID {pci_address}: its PF has no network interface",
                       f"PF {dev.pf_address}")
    userspace = (want_driver or dev.driver) in USERSPACE_DRIVERS
    if not userspace and host_netdev is None:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"deviceID {pci_address} has no network interface in the host",
                       f"driver {dev.driver or 'none'}; it may be attached to another pod already")
    return Device(pci_address, Mode.USERSPACE if userspace else Mode.NETDEV, dev.driver,
                  None if userspace else host_netdev, dev.pf_netdev, dev.vf_index, dev.pf_address)
