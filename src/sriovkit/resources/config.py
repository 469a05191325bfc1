"""The device plugin's ``config.json``, accepted as upstream writes it.

Parsing collects every problem before failing, and each problem is one line
naming the file, the JSON path and the offending value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from sriovkit.resources.ranges import RangeError, format_ranges, parse_indexed_names

DEFAULT_RESOURCE_PREFIX = "intel.com"
_E = TypeVar("_E", bound=StrEnum)
_RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9_]+$")
# a DNS subdomain, as Kubernetes requires of an extended resource's prefix
_PREFIX = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HEX4 = re.compile(r"^[0-9a-fA-F]{4}$")
_PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


class DeviceType(StrEnum):
    NET_DEVICE = "netDevice"
    ACCELERATOR = "accelerator"
    AUX_NET_DEVICE = "auxNetDevice"


class ServedBy(StrEnum):
    """sriovkit extension (``servedBy`` on a resourceList entry): how the agent offers the pool.
    Its devices are the pool's whichever it is, so no VF is ever offered both ways."""

    DEVICE_PLUGIN = "devicePlugin"
    DRA = "dra"
    NONE = "none"  # held back: neither the device plugin nor DRA offers them


class AllocatePolicy(StrEnum):
    PACKED = "packed"
    SPREAD = "spread"


_GENERIC = {"vendors", "devices", "drivers", "pciAddresses"}
_NETDEV = _GENERIC | {
    "pfNames", "rootDevices", "linkTypes", "isRdma", "needVhostNet", "ddpProfiles", "vdpaType", "pKeys",
    "acpiIndexes",
}
_AUX = {"vendors", "devices", "drivers", "pfNames", "rootDevices", "linkTypes", "isRdma", "auxTypes"}
SELECTOR_FIELDS: dict[DeviceType, set[str]] = {
    DeviceType.NET_DEVICE: _NETDEV,
    DeviceType.ACCELERATOR: _GENERIC,
    DeviceType.AUX_NET_DEVICE: _AUX,
}
_LIST_FIELDS = {"vendors", "devices", "drivers", "pciAddresses", "pfNames", "rootDevices", "linkTypes",
                "ddpProfiles", "pKeys", "acpiIndexes", "auxTypes"}
_BOOL_FIELDS = {"isRdma", "needVhostNet"}
_VDPA_TYPES = {"vhost", "virtio", "vduse"}
_RESOURCE_FIELDS = {"resourceName", "resourcePrefix", "deviceType", "excludeTopology", "selectors",
                    "additionalInfo", "allocatePolicy", "servedBy"}


class ConfigError(ValueError):
    """Invalid resource config. `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class IndexedName:
    """A `pfNames`/`rootDevices` entry: a PF name or address, optionally with VF indexes."""

    name: str
    vf_indexes: frozenset[int] | None = None  # None: every VF (no '#')

    def covers(self, vf_index: int | None) -> bool:
        if self.vf_indexes is None:
            return True
        return vf_index is not None and vf_index in self.vf_indexes

    def __str__(self) -> str:
        """As written in a config file: ``eth0`` or ``eth0#0-3,7``."""
        if self.vf_indexes is None:
            return self.name
        return f"{self.name}#{format_ranges(self.vf_indexes)}"


@dataclass(frozen=True, slots=True)
class Selector:
    """One selector object; an empty or absent list matches everything."""

    vendors: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    drivers: tuple[str, ...] = ()
    pci_addresses: tuple[str, ...] = ()
    pf_names: tuple[IndexedName, ...] = ()
    root_devices: tuple[IndexedName, ...] = ()
    link_types: tuple[str, ...] = ()
    is_rdma: bool = False
    need_vhost_net: bool = False
    ddp_profiles: tuple[str, ...] = ()
    vdpa_type: str | None = None
    pkeys: tuple[str, ...] = ()
    acpi_indexes: tuple[str, ...] = ()
    aux_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResourceConfig:
    """One `resourceList` entry."""

    resource_name: str
    resource_prefix: str
    device_type: DeviceType = DeviceType.NET_DEVICE
    exclude_topology: bool = False
    selectors: tuple[Selector, ...] = (Selector(),)
    additional_info: dict[str, dict[str, str]] = field(default_factory=dict)
    allocate_policy: AllocatePolicy = AllocatePolicy.PACKED
    served_by: ServedBy = ServedBy.DEVICE_PLUGIN

    @property
    def full_name(self) -> str:
        return f"{self.resource_prefix}/{self.resource_name}"


@dataclass(frozen=True, slots=True)
class ResourceList:
    resources: tuple[ResourceConfig, ...]
    source: str = "<config>"


# Selector attribute -> config key, for writing a resource list back as upstream's JSON
_SELECTOR_KEYS = {
    "vendors": "vendors", "devices": "devices", "drivers": "drivers", "pci_addresses": "pciAddresses",
    "pf_names": "pfNames", "root_devices": "rootDevices", "link_types": "linkTypes", "is_rdma": "isRdma",
    "need_vhost_net": "needVhostNet", "ddp_profiles": "ddpProfiles", "vdpa_type": "vdpaType", "pkeys": "pKeys",
    "acpi_indexes": "acpiIndexes", "aux_types": "auxTypes",
}


def to_config_json(resources: ResourceList) -> dict[str, Any]:
    """A resource list as a ``config.json`` document that `parse_config` reads back unchanged."""
    return {"resourceList": [_resource_json(r) for r in resources.resources]}


def _resource_json(resource: ResourceConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceName": resource.resource_name, "resourcePrefix": resource.resource_prefix,
                           "deviceType": resource.device_type.value,
                           "selectors": [_selector_json(s) for s in resource.selectors]}
    if resource.exclude_topology:
        out["excludeTopology"] = True
    if resource.additional_info:
        out["additionalInfo"] = resource.additional_info
    if resource.allocate_policy is not AllocatePolicy.PACKED:
        out["allocatePolicy"] = resource.allocate_policy.value
    if resource.served_by is not ServedBy.DEVICE_PLUGIN:
        out["servedBy"] = resource.served_by.value
    return out


def _selector_json(selector: Selector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key in _SELECTOR_KEYS.items():
        value = getattr(selector, attr)
        if isinstance(value, tuple) and value:
            out[key] = [str(v) for v in value]
        elif value is True or (isinstance(value, str) and value):
            out[key] = value
    return out


def load_config_file(path: str | Path, *, default_prefix: str = DEFAULT_RESOURCE_PREFIX) -> ResourceList:
    """Read and validate a config file; raises `ConfigError` naming `path`."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    return parse_config_text(text, source=source, default_prefix=default_prefix)


def parse_config_text(
    text: str, *, source: str = "<config>", default_prefix: str = DEFAULT_RESOURCE_PREFIX
) -> ResourceList:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    return parse_config(data, source=source, default_prefix=default_prefix)


def parse_config(data: Any, *, source: str = "<config>", default_prefix: str = DEFAULT_RESOURCE_PREFIX) -> ResourceList:
    problems = _Problems(source)
    if not isinstance(data, dict):
        problems.add("", "must be a JSON object with a resourceList", data)
        problems.raise_if_any()
    for key in data:
        if key != "resourceList":
            problems.add(_member("", key), "unknown field", data[key])
    raw_list = data.get("resourceList")
    if not isinstance(raw_list, list):
        problems.add("resourceList", "must be a list", raw_list)
        problems.raise_if_any()
    if default_prefix and not _PREFIX.match(default_prefix):
        problems.add("(--resource-prefix)", "must be a DNS subdomain", default_prefix)
    resources: list[ResourceConfig] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_list):
        resource = _parse_resource(raw, f"resourceList[{i}]", problems, default_prefix)
        if resource is None:
            continue
        if resource.full_name in seen:
            problems.add(f"resourceList[{i}].resourceName",
                         f"duplicate resource {resource.full_name} (also resourceList[{seen[resource.full_name]}])",
                         resource.resource_name)
        else:
            seen[resource.full_name] = i
        resources.append(resource)
    problems.raise_if_any()
    return ResourceList(tuple(resources), source)


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_*:.-]+$")


def _member(path: str, key: str) -> str:
    """JSON path of `key` under `path`; odd keys (spaces, newlines) are quoted so
    a problem always stays on one line."""
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, path: str, message: str, value: Any) -> None:
        where = f"{self.source}: {path}: " if path else f"{self.source}: "
        self.lines.append(f"{where}{message} (value: {_show(value)})")

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError(self.lines)


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_resource(raw: Any, path: str, problems: _Problems, default_prefix: str) -> ResourceConfig | None:
    if not isinstance(raw, dict):
        problems.add(path, "must be an object", raw)
        return None
    before = len(problems.lines)
    for key in raw:
        if key not in _RESOURCE_FIELDS:
            problems.add(_member(path, key), "unknown field", raw[key])
    name = raw.get("resourceName")
    if not isinstance(name, str) or not _RESOURCE_NAME.match(name):
        problems.add(f"{path}.resourceName", "required; letters, digits and '_' only", name)
    prefix = raw.get("resourcePrefix", default_prefix)
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        problems.add(f"{path}.resourcePrefix", "must be a DNS subdomain such as intel.com", prefix)
    device_type = _enum(raw, "deviceType", DeviceType, DeviceType.NET_DEVICE, path, problems)
    policy = _enum(raw, "allocatePolicy", AllocatePolicy, AllocatePolicy.PACKED, path, problems)
    served_by = _enum(raw, "servedBy", ServedBy, ServedBy.DEVICE_PLUGIN, path, problems)
    exclude = raw.get("excludeTopology", False)
    if not isinstance(exclude, bool):
        problems.add(f"{path}.excludeTopology", "must be true or false", exclude)
    selectors = _parse_selectors(raw.get("selectors", {}), f"{path}.selectors", device_type, problems)
    info = _parse_additional_info(raw.get("additionalInfo", {}), f"{path}.additionalInfo", problems)
    if len(problems.lines) > before or not isinstance(name, str) or not isinstance(prefix, str):
        return None
    return ResourceConfig(
        resource_name=name,
        resource_prefix=prefix,
        device_type=device_type,
        exclude_topology=exclude,
        selectors=selectors,
        additional_info=info,
        allocate_policy=policy,
        served_by=served_by,
    )


def _enum(raw: dict[str, Any], key: str, enum: type[_E], default: _E, path: str, problems: _Problems) -> _E:
    value = raw.get(key, default)
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        problems.add(f"{path}.{key}", f"must be one of {allowed}", value)
        return default


def _parse_selectors(raw: Any, path: str, device_type: DeviceType, problems: _Problems) -> tuple[Selector, ...]:
    if isinstance(raw, dict):
        return (_parse_selector(raw, path, device_type, problems),)
    if isinstance(raw, list) and raw:
        return tuple(_parse_selector(item, f"{path}[{i}]", device_type, problems) for i, item in enumerate(raw))
    problems.add(path, "must be an object or a non-empty list of objects", raw)
    return ()


def _parse_selector(raw: Any, path: str, device_type: DeviceType, problems: _Problems) -> Selector:
    if not isinstance(raw, dict):
        problems.add(path, "must be an object", raw)
        return Selector()
    allowed = SELECTOR_FIELDS[device_type]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        field_path = _member(path, key)
        if key not in allowed:
            known = any(key in fields for fields in SELECTOR_FIELDS.values())
            why = f"not a selector of deviceType {device_type.value}" if known else "unknown selector"
            problems.add(field_path, why, value)
        elif key in _BOOL_FIELDS:
            if not isinstance(value, bool):
                problems.add(field_path, "must be true or false", value)
            values[key] = value is True
        elif key == "vdpaType":
            if not isinstance(value, str) or value not in _VDPA_TYPES:
                problems.add(field_path, f"must be one of {', '.join(sorted(_VDPA_TYPES))}", value)
            values[key] = value
        elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.add(field_path, "must be a list of strings", value)
        else:
            values[key] = _check_list(key, value, field_path, problems)
    return Selector(
        vendors=tuple(v.lower() for v in values.get("vendors", ())),
        devices=tuple(v.lower() for v in values.get("devices", ())),
        drivers=tuple(values.get("drivers", ())),
        pci_addresses=tuple(v.lower() for v in values.get("pciAddresses", ())),
        pf_names=tuple(values.get("pfNames", ())),
        root_devices=tuple(values.get("rootDevices", ())),
        link_types=tuple(values.get("linkTypes", ())),
        is_rdma=values.get("isRdma", False),
        need_vhost_net=values.get("needVhostNet", False),
        ddp_profiles=tuple(values.get("ddpProfiles", ())),
        vdpa_type=values.get("vdpaType"),
        pkeys=tuple(v.lower() for v in values.get("pKeys", ())),
        acpi_indexes=tuple(values.get("acpiIndexes", ())),
        aux_types=tuple(values.get("auxTypes", ())),
    )


def _check_list(key: str, value: list[str], path: str, problems: _Problems) -> tuple[Any, ...]:
    if key in ("vendors", "devices"):
        _each(value, path, problems, lambda v: bool(_HEX4.match(v)), "must be 4 hex digits")
    elif key == "pciAddresses":
        _each(value, path, problems, lambda v: bool(_PCI_ADDRESS.match(v)), "must be a PCI address like 0000:3b:02.4")
    elif key in ("pfNames", "rootDevices"):
        return _indexed_names(value, path, problems, addresses=key == "rootDevices")
    elif key == "linkTypes":
        _each(value, path, problems, lambda v: v.strip() != "", "must not be empty")
    elif key == "pKeys":
        _each(value, path, problems, _is_pkey, "must be a hex partition key like 0x8001")
    return tuple(value)


def _each(values: Iterable[str], path: str, problems: _Problems, ok: Any, message: str) -> None:
    for i, v in enumerate(values):
        if not ok(v):
            problems.add(f"{path}[{i}]", message, v)


def _is_pkey(value: str) -> bool:
    try:
        return 0 <= int(value, 16) <= 0xFFFF
    except ValueError:
        return False


def _indexed_names(value: list[str], path: str, problems: _Problems, *, addresses: bool) -> tuple[IndexedName, ...]:
    result: list[IndexedName] = []
    for i, entry in enumerate(value):
        try:
            name, indexes = parse_indexed_names(entry)
        except RangeError as exc:
            problems.add(f"{path}[{i}]", str(exc), entry)
            continue
        if addresses and not _PCI_ADDRESS.match(name):
            problems.add(f"{path}[{i}]", "must be a PCI address like 0000:3b:00.0, optionally with #ranges", entry)
            continue
        if not name:
            problems.add(f"{path}[{i}]", "has no name before '#'", entry)
            continue
        result.append(IndexedName(name.lower() if addresses else name, indexes))
    return tuple(result)


def _parse_additional_info(raw: Any, path: str, problems: _Problems) -> dict[str, dict[str, str]]:
    if not isinstance(raw, dict):
        problems.add(path, "must be an object mapping a PCI address or '*' to an object of strings", raw)
        return {}
    info: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        if key != "*" and not _PCI_ADDRESS.match(key):
            problems.add(_member(path, key), "key must be a PCI address or '*'", key)
        elif not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            problems.add(f"{path}.{key}", "must be an object of string values", value)
        else:
            info[key.lower() if key != "*" else key] = dict(value)
    return info
