"""Does a selector take a device? Each check answers with the reason it fails.

A reason is what `sriovctl pools --explain` prints, so it names the selector
field, the device's value and what the selector asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from sriovkit.host.model import AuxDevice, PciDevice
from sriovkit.resources.config import IndexedName, Selector

Device = PciDevice | AuxDevice


class Reason:
    """Why a selector field refused a device. The text is built only when shown:
    pool building rejects most devices for most resources, and formatting every
    reason would cost more than the matching itself."""

    __slots__ = ("_args", "_fmt")

    def __init__(self, fmt: Callable[..., str], *args: object) -> None:
        self._fmt = fmt
        self._args = args

    def __str__(self) -> str:
        return self._fmt(*self._args)

    def made_by(self, fmt: Callable[..., str]) -> bool:
        """Whether `fmt` says this reason: callers tell kinds of reason apart by it, not by its text."""
        return self._fmt is fmt

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


_Check = Callable[[Selector, Device, bool], Reason | None]


def device_id(dev: Device) -> str:
    """The ID the kubelet sees: a PCI address, or an auxiliary device's name."""
    return dev.pci_address if isinstance(dev, PciDevice) else dev.name


def selector_rejects(selector: Selector, dev: Device, *, vhost_net: bool) -> Reason | None:
    """None when `selector` takes `dev`, else why not (the first failing field)."""
    for check in _CHECKS:
        reason = check(selector, dev, vhost_net)
        if reason is not None:
            return reason
    return None


def _listed(field: str, wanted: tuple[str, ...], value: str | None) -> Reason | None:
    if not wanted or (value is not None and value in wanted):
        return None
    return Reason(_not_in, field, value, wanted)


def _not_in(field: str, value: str | None, wanted: tuple[str, ...]) -> str:
    return f"{field}: {value or '(none)'} is not {alternatives(wanted)}"


def alternatives(values: tuple[str, ...] | list[str]) -> str:
    """`a`, `a or b`, `a, b or c`: a selector's values as the operator wrote them, no Python syntax."""
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _text(text: str) -> str:
    return text


def _vendors(s: Selector, d: Device, _: bool) -> Reason | None:
    return _listed("vendors", s.vendors, d.vendor if isinstance(d, PciDevice) else None) if s.vendors else None


def _devices(s: Selector, d: Device, _: bool) -> Reason | None:
    return _listed("devices", s.devices, d.device if isinstance(d, PciDevice) else None) if s.devices else None


def _drivers(s: Selector, d: Device, _: bool) -> Reason | None:
    return _listed("drivers", s.drivers, d.driver if isinstance(d, PciDevice) else None) if s.drivers else None


def _pci_addresses(s: Selector, d: Device, _: bool) -> Reason | None:
    return _listed("pciAddresses", s.pci_addresses, device_id(d))


def _matches_indexed(entries: tuple[IndexedName, ...], name: str | None, vf_index: int | None) -> bool:
    """As upstream's getItem + isSelected: the first entry naming the PF (case-insensitively)
    decides; a later entry for the same PF is never looked at."""
    if name is None:
        return False
    wanted = name.lower()
    entry = next((e for e in entries if e.name.lower() == wanted), None)
    return entry is not None and entry.covers(vf_index)


def _pf_names(s: Selector, d: Device, _: bool) -> Reason | None:
    pf_name = d.pf_name if isinstance(d, PciDevice) else d.pf_netdev
    return _indexed_reason("pfNames", s.pf_names, d, pf_name, pf_name or "(no PF interface)")


def _root_devices(s: Selector, d: Device, _: bool) -> Reason | None:
    root = d.root_device if isinstance(d, PciDevice) else d.parent_address
    return _indexed_reason("rootDevices", s.root_devices, d, root, root)


def _indexed_reason(field: str, entries: tuple[IndexedName, ...], d: Device, name: str | None,
                    shown: str | None) -> Reason | None:
    """None when `entries` (a `name#indices` selector) is empty or covers the device, else why not."""
    if not entries:
        return None
    vf_index = d.vf_index if isinstance(d, PciDevice) else None
    if _matches_indexed(entries, name, vf_index):
        return None
    return Reason(_not_covered, field, shown, vf_index, entries)


def _not_covered(field: str, name: str, vf_index: int | None, entries: tuple[IndexedName, ...]) -> str:
    where = name + (f"#{vf_index}" if vf_index is not None else "")
    return f"{field}: {where} is not covered by {alternatives([str(e) for e in entries])}"


def _link_types(s: Selector, d: Device, _: bool) -> Reason | None:
    return _listed("linkTypes", s.link_types, d.link_type)


def _is_rdma(s: Selector, d: Device, _: bool) -> Reason | None:
    if s.is_rdma and not d.rdma_devices:
        return Reason(_text, "isRdma: device has no RDMA device")
    return None


def _need_vhost_net(s: Selector, d: Device, vhost_net: bool) -> Reason | None:
    if s.need_vhost_net and not vhost_net:
        return Reason(_text, "needVhostNet: /dev/vhost-net or /dev/net/tun missing on the host")
    return None


def _ddp_profiles(s: Selector, d: Device, _: bool) -> Reason | None:
    return _listed("ddpProfiles", s.ddp_profiles, d.ddp_profile if isinstance(d, PciDevice) else None)


def _vdpa_type(s: Selector, d: Device, _: bool) -> Reason | None:
    if s.vdpa_type is None:
        return None
    have = d.vdpa_type if isinstance(d, PciDevice) else None
    return None if have == s.vdpa_type else Reason(_text, f"vdpaType: {have or '(none)'} is not {s.vdpa_type}")


def _pkeys(s: Selector, d: Device, _: bool) -> Reason | None:
    if not s.pkeys:
        return None
    have = d.pkeys if isinstance(d, PciDevice) else ()
    if any(p in s.pkeys for p in have):
        return None
    return Reason(_text, f"pKeys: {', '.join(have) or '(none)'} has none of {alternatives(s.pkeys)}")


def _acpi_indexes(s: Selector, d: Device, _: bool) -> Reason | None:
    return _listed("acpiIndexes", s.acpi_indexes, d.acpi_index if isinstance(d, PciDevice) else None)


def _aux_types(s: Selector, d: Device, _: bool) -> Reason | None:
    return _listed("auxTypes", s.aux_types, d.aux_type if isinstance(d, AuxDevice) else None)


_CHECKS: tuple[_Check, ...] = (
    _vendors, _devices, _drivers, _pci_addresses, _pf_names, _root_devices, _link_types, _is_rdma,
    _need_vhost_net, _ddp_profiles, _vdpa_type, _pkeys, _acpi_indexes, _aux_types,
)
