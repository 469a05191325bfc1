"""Read the node's PCI / SR-IOV state from sysfs into a `HostSnapshot`.

This is on the hot path (agent start, every config reload, every VF count
change), so it reads as few files as it can: the PCI ``uevent`` gives
class, ids and subsystem in one read, and VF identity comes from the PF's
``virtfnN`` links rather than one ``physfn`` lookup per VF.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from sriovkit.errors import SriovkitError
from sriovkit.host.model import (
    ACCELERATOR_CLASS_PREFIX,
    LINK_TYPES,
    NETWORK_CLASS_PREFIX,
    AuxDevice,
    HostSnapshot,
    PciDevice,
)
from sriovkit.host.sysfs import Sysfs, link_name, list_dir, read_int, read_text
from sriovkit.pciaddr import function_number

_VIRTFN = re.compile(r"virtfn(\d+)$")
_AUX_NAME = re.compile(r"^[\w-]+\.([\w-]+)\.\d+$")
_VDPA_TYPES = {"vhost_vdpa": "vhost", "virtio_vdpa": "virtio"}
_RELEVANT_CLASSES = (NETWORK_CLASS_PREFIX, ACCELERATOR_CLASS_PREFIX)


class DeviceNotFoundError(SriovkitError, LookupError):
    """No PCI function with that address exists under the host root."""

    def __init__(self, pci_address: str, where: str) -> None:
        super().__init__(f"PCI device {pci_address} not found under {where}")
        self.pci_address = pci_address


@dataclass(slots=True)
class _Ids:
    vendor: str = ""
    device: str = ""
    class_code: str = ""
    subsystem_vendor: str = ""
    subsystem_device: str = ""


class _Fields(TypedDict):
    """A PciDevice's constructor arguments while discovery gathers them (the PF relation comes last,
    once every PF is read): the same names and types, so `PciDevice(**fields)` is checked."""

    pci_address: str
    vendor: str
    device: str
    class_code: str
    subsystem_vendor: str
    subsystem_device: str
    driver: str | None
    numa_node: int | None
    iommu_group: str | None
    acpi_index: str | None
    netdevs: tuple[str, ...]
    link_type: str | None
    rdma_devices: NotRequired[tuple[str, ...]]
    rdma_char_devices: NotRequired[tuple[str, ...]]
    uio_devices: NotRequired[tuple[str, ...]]
    pkeys: NotRequired[tuple[str, ...]]
    vdpa_type: NotRequired[str | None]
    total_vfs: NotRequired[int | None]
    num_vfs: NotRequired[int]
    vf_addresses: NotRequired[tuple[str, ...]]
    pf_address: NotRequired[str | None]
    vf_index: NotRequired[int | None]
    pf_netdev: NotRequired[str | None]


@dataclass(slots=True)
class _Read:
    """One device directory read: its fields, and the names of its virtfnN links and auxiliary
    devices (PFs only; followed by the caller)."""

    fields: _Fields
    virtfns: list[str]
    aux: list[str]


@dataclass(slots=True)
class _SriovLinks:
    pf_of: dict[str, tuple[str, int]] = field(default_factory=dict)  # vf -> (pf, index)


def discover(sysfs: Sysfs) -> HostSnapshot:
    """Every network and accelerator PCI function on the node, with SR-IOV relations."""
    fields: dict[str, _Fields] = {}
    links = _SriovLinks()
    aux: dict[str, AuxDevice] = {}
    for pci_address in list_dir(sysfs.pci_devices):
        path = sysfs.pci_device_dir(pci_address)
        ids = _read_ids(path)
        if not ids.class_code.startswith(_RELEVANT_CLASSES):
            continue
        read = _read_device_fields(path, pci_address, ids)
        fields[pci_address] = read.fields
        for vf_address, index in _read_virtfns(path, read):
            links.pf_of[vf_address] = (pci_address, index)
        for aux_name in read.aux:
            aux[aux_name] = _read_aux(os.path.join(path, aux_name), aux_name, pci_address)
    devices = {a: PciDevice(**_with_pf(kw, a, links, fields)) for a, kw in fields.items()}
    return HostSnapshot(devices=devices, aux_devices=_with_aux_pf(aux, devices), vhost_net=_has_vhost_net(sysfs))


def discover_device(sysfs: Sysfs, pci_address: str) -> PciDevice:
    """One function by address, with its PF relation: the CNI's cheap lookup."""
    path = sysfs.pci_device_dir(pci_address)
    ids = _read_ids(path)
    if not ids.vendor:
        raise DeviceNotFoundError(pci_address, sysfs.pci_devices)
    read = _read_device_fields(path, pci_address, ids)
    _read_virtfns(path, read)
    kwargs = read.fields
    pf_address = link_name(os.path.join(path, "physfn"))
    if pf_address is not None:
        pf_path = sysfs.pci_device_dir(pf_address)
        kwargs["pf_address"] = pf_address
        kwargs["vf_index"] = _vf_index_on_pf(pf_path, pci_address)
        pf_netdevs = list_dir(os.path.join(pf_path, "net"))
        kwargs["pf_netdev"] = pf_netdevs[0] if pf_netdevs else None
        if kwargs["link_type"] is None and pf_netdevs:
            kwargs["link_type"] = _link_type(os.path.join(pf_path, "net", pf_netdevs[0]))
    return PciDevice(**kwargs)


def virtfns(sysfs: Sysfs, pf_address: str) -> list[tuple[int, str]]:
    """A PF's VFs as (index, PCI address), lowest index first."""
    path = sysfs.pci_device_dir(pf_address)
    found = [(int(m.group(1)), vf) for name in list_dir(path)
             if (m := _VIRTFN.match(name)) and (vf := link_name(os.path.join(path, name))) is not None]
    return sorted(found)


def _read_ids(path: str) -> _Ids:
    uevent = read_text(os.path.join(path, "uevent"))
    ids = _Ids()
    if uevent:
        for line in uevent.splitlines():
            key, _, value = line.partition("=")
            if key == "PCI_CLASS":
                ids.class_code = value.lower().zfill(6)
            elif key == "PCI_ID":
                ids.vendor, _, ids.device = value.lower().partition(":")
            elif key == "PCI_SUBSYS_ID":
                ids.subsystem_vendor, _, ids.subsystem_device = value.lower().partition(":")
    if not ids.vendor:
        ids.vendor = _hex_attr(path, "vendor", 4)
        ids.device = _hex_attr(path, "device", 4)
        ids.class_code = _hex_attr(path, "class", 6)
        ids.subsystem_vendor = _hex_attr(path, "subsystem_vendor", 4)
        ids.subsystem_device = _hex_attr(path, "subsystem_device", 4)
    return ids


def _hex_attr(path: str, name: str, width: int) -> str:
    text = read_text(os.path.join(path, name))
    if not text:
        return ""
    return text.lower().removeprefix("0x").zfill(width)


def _read_device_fields(path: str, pci_address: str, ids: _Ids) -> _Read:
    # One scandir of the device directory tells which optional parts exist, so
    # absent ones (rdma, uio, vdpa, SR-IOV) cost no failed open per device.
    entries = _entries(path)
    numa = read_int(os.path.join(path, "numa_node"))
    netdevs = tuple(list_dir(os.path.join(path, "net"))) if "net" in entries else ()
    kwargs: _Fields = {
        "pci_address": pci_address,
        "vendor": ids.vendor,
        "device": ids.device,
        "class_code": ids.class_code,
        "subsystem_vendor": ids.subsystem_vendor,
        "subsystem_device": ids.subsystem_device,
        "driver": link_name(os.path.join(path, "driver")) if "driver" in entries else None,
        "numa_node": numa if numa is not None and numa >= 0 else None,
        "iommu_group": link_name(os.path.join(path, "iommu_group")) if "iommu_group" in entries else None,
        "acpi_index": read_text(os.path.join(path, "acpi_index")) if "acpi_index" in entries else None,
        "netdevs": netdevs,
        "link_type": _link_type(os.path.join(path, "net", netdevs[0])) if netdevs else None,
    }
    if "uio" in entries:
        kwargs["uio_devices"] = tuple(list_dir(os.path.join(path, "uio")))
    vdpa = [name for name in entries if name.startswith("vdpa") and name[4:].isdigit()]
    if vdpa:
        kwargs["vdpa_type"] = _VDPA_TYPES.get(link_name(os.path.join(path, vdpa[0], "driver")) or "")
    if "infiniband" in entries:
        rdma = tuple(list_dir(os.path.join(path, "infiniband")))
        kwargs["rdma_devices"] = rdma
        kwargs["rdma_char_devices"] = _rdma_char_devices(path)
        kwargs["pkeys"] = _pkeys(os.path.join(path, "infiniband", rdma[0])) if rdma else ()
    if "sriov_totalvfs" in entries:
        kwargs["total_vfs"] = read_int(os.path.join(path, "sriov_totalvfs")) or 0
        kwargs["num_vfs"] = read_int(os.path.join(path, "sriov_numvfs")) or 0
        kwargs["vf_addresses"] = ()
        virtfns = [name for name in entries if name.startswith("virtfn")]
    else:
        virtfns = []
    return _Read(kwargs, virtfns, [name for name, is_dir in entries.items() if is_dir and _AUX_NAME.match(name)])


def _entries(path: str) -> dict[str, bool]:
    """Names in a device directory, each with whether it is a real directory."""
    try:
        with os.scandir(path) as it:
            return {e.name: e.is_dir(follow_symlinks=False) for e in it}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _read_virtfns(path: str, read: _Read) -> list[tuple[str, int]]:
    """The PF's VFs by index; also stores them in its fields in index order."""
    found: list[tuple[str, int]] = []
    for name in read.virtfns:
        m = _VIRTFN.match(name)
        if m:
            vf_address = link_name(os.path.join(path, name))
            if vf_address is not None:
                found.append((vf_address, int(m.group(1))))
    found.sort(key=lambda item: item[1])
    if "total_vfs" in read.fields:
        read.fields["vf_addresses"] = tuple(a for a, _ in found)
    return found


def _vf_index_on_pf(pf_path: str, vf_address: str) -> int | None:
    """The VF's index on its PF: the one its routing ID gives (`_index_by_routing_id`), when the
    PF's `virtfn<index>` does point at it, else found by reading each `virtfn*` link."""
    guess = _index_by_routing_id(pf_path, vf_address)
    if guess is not None and link_name(os.path.join(pf_path, f"virtfn{guess}")) == vf_address:
        return guess
    for name in list_dir(pf_path):
        m = _VIRTFN.match(name)
        if m and link_name(os.path.join(pf_path, name)) == vf_address:
            return int(m.group(1))
    return None


def _index_by_routing_id(pf_path: str, vf_address: str) -> int | None:
    """SR-IOV numbers VF n at routing ID PF + First VF Offset + n * VF Stride (the PF's
    `sriov_offset` and `sriov_stride`): one read of each instead of a readlink per VF before it,
    which for a high VF on a PF with many was most of what a CNI call spent finding its VF."""
    pf, vf = function_number(os.path.basename(pf_path)), function_number(vf_address)
    offset, stride = read_int(os.path.join(pf_path, "sriov_offset")), read_int(os.path.join(pf_path, "sriov_stride"))
    if pf is None or vf is None or pf >> 16 != vf >> 16 or offset is None or not stride:
        return None  # a VF is in its PF's domain
    index, rest = divmod(vf - pf - offset, stride)
    return index if index >= 0 and rest == 0 else None


def _with_pf(kwargs: _Fields, pci_address: str, links: _SriovLinks, fields: dict[str, _Fields]) -> _Fields:
    relation = links.pf_of.get(pci_address)
    if relation is None:
        return kwargs
    pf_address, index = relation
    pf_fields = fields[pf_address]
    pf_netdevs: tuple[str, ...] = pf_fields["netdevs"]
    kwargs["pf_address"] = pf_address
    kwargs["vf_index"] = index
    kwargs["pf_netdev"] = pf_netdevs[0] if pf_netdevs else None
    if kwargs["link_type"] is None:
        # a VF bound to vfio-pci has no netdev; upstream reports the PF's link type
        kwargs["link_type"] = pf_fields["link_type"]
    return kwargs


def _link_type(net_dir: str) -> str | None:
    arphrd = read_int(os.path.join(net_dir, "type"))
    if arphrd is None:
        return None
    return LINK_TYPES.get(arphrd, str(arphrd))


def _rdma_char_devices(path: str) -> tuple[str, ...]:
    names = list_dir(os.path.join(path, "infiniband_verbs")) + list_dir(os.path.join(path, "infiniband_mad"))
    return tuple(names)


def _pkeys(ib_dir: str) -> tuple[str, ...]:
    pkeys: list[str] = []
    for port in list_dir(os.path.join(ib_dir, "ports")):
        pkey_dir = os.path.join(ib_dir, "ports", port, "pkeys")
        for index in list_dir(pkey_dir):
            value = read_text(os.path.join(pkey_dir, index))
            if value and int(value, 16) != 0 and value not in pkeys:
                pkeys.append(value.lower())
    return tuple(pkeys)


def _read_aux(path: str, name: str, parent: str) -> AuxDevice:
    m = _AUX_NAME.match(name)
    netdevs = tuple(list_dir(os.path.join(path, "net")))
    rdma = tuple(list_dir(os.path.join(path, "infiniband")))
    return AuxDevice(
        name=name,
        aux_type=m.group(1) if m else "",
        parent_address=parent,
        netdevs=netdevs,
        link_type=_link_type(os.path.join(path, "net", netdevs[0])) if netdevs else None,
        rdma_devices=rdma,
        rdma_char_devices=_rdma_char_devices(path) if rdma else (),
    )


def _with_aux_pf(aux: dict[str, AuxDevice], devices: dict[str, PciDevice]) -> dict[str, AuxDevice]:
    result: dict[str, AuxDevice] = {}
    for name, dev in sorted(aux.items()):
        parent = devices.get(dev.parent_address)
        pf_netdev = parent.netdev if parent is not None else None
        result[name] = dataclasses.replace(dev, pf_netdev=pf_netdev)
    return result


def _has_vhost_net(sysfs: Sysfs) -> bool:
    return os.path.exists(sysfs.dev_path("/dev/vhost-net")) and os.path.exists(sysfs.dev_path("/dev/net/tun"))
