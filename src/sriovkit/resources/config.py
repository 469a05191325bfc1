"""The device plugin's ``config.json``, accepted as upstream accepts it.

Decoded as upstream's Go structs decode it (`sriovkit.gojson`: keys matched as Go matches them,
the last of duplicate keys winning, unknown keys ignored), then checked. What upstream refuses,
and what cannot work, is a problem: parsing collects every one before failing, each one line
naming the file, the JSON path and the offending value. What upstream silently ignores or never
matches is a warning (`ResourceList.warnings`, same form), and a problem with ``strict=True``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from sriovkit import gojson, nodepaths
from sriovkit.errors import SriovkitError
from sriovkit.gojson import Field, Slice, String
from sriovkit.resources.ranges import RangeError, format_ranges, parse_indexed_names

DEFAULT_RESOURCE_PREFIX = nodepaths.RESOURCE_PREFIX
_E = TypeVar("_E", bound=StrEnum)
_RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")  # upstream's utils.ValidResourceName
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


# upstream's pkg/types selector structs, field for field (embedded structs promoted in order)
def _strings(*names: str) -> tuple[Field, ...]:
    return tuple(Field(n, Slice(String())) for n in names)


_DEVICE_SELECTORS = _strings("vendors", "devices", "drivers")
_PCI_SELECTORS = _strings("pciAddresses")
_NET_SELECTORS = (*_strings("pfNames", "rootDevices", "linkTypes"), Field("isRdma", gojson.Bool()),
                  *_strings("acpiIndexes"), Field("needVhostNet", gojson.Bool()))
_SELECTOR_STRUCTS: dict[DeviceType, gojson.Struct] = {
    DeviceType.NET_DEVICE: gojson.struct(*_DEVICE_SELECTORS, *_PCI_SELECTORS, *_NET_SELECTORS,
                                         *_strings("ddpProfiles"), Field("vdpaType", String()), *_strings("pKeys")),
    DeviceType.ACCELERATOR: gojson.struct(*_DEVICE_SELECTORS, *_PCI_SELECTORS),
    DeviceType.AUX_NET_DEVICE: gojson.struct(*_DEVICE_SELECTORS, *_NET_SELECTORS, *_strings("auxTypes")),
}
SELECTOR_FIELDS: dict[DeviceType, set[str]] = {t: {f.name for f in s.fields} for t, s in _SELECTOR_STRUCTS.items()}
# decoded by upstream for an auxNetDevice, but never applied to one
_AUX_IGNORED = {"acpiIndexes", "needVhostNet"}
_VDPA_TYPES = {"vhost", "virtio", "vduse"}
_RESOURCE = gojson.struct(
    Field("resourcePrefix", String()), Field("resourceName", String()), Field("deviceType", String()),
    Field("excludeTopology", gojson.Bool()), Field("selectors", gojson.Raw()),
    Field("additionalInfo", gojson.Map(gojson.Map(String()))),
    Field("SelectorObjs", Slice(gojson.Any_()), note="upstream fills it from selectors"),
    Field("allocatePolicy", String()), Field("servedBy", String()),  # sriovkit's own
)
_CONFIG = gojson.struct(Field("resourceList", Slice(_RESOURCE)))
_RESOURCE_FIELDS = {f.name for f in _RESOURCE.fields} - {"SelectorObjs"}


class ConfigError(SriovkitError, ValueError):
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
    # what upstream accepts silently but is likely a mistake: one line each, as problems are
    warnings: tuple[str, ...] = field(default=(), compare=False)


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


def load_config_file(path: str | Path, *, default_prefix: str = DEFAULT_RESOURCE_PREFIX,
                     strict: bool = False) -> ResourceList:
    """Read and validate a config file; raises `ConfigError` naming `path`."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    return parse_config_text(raw, source=source, default_prefix=default_prefix, strict=strict)


def parse_config_text(text: str | bytes, *, source: str = "<config>", default_prefix: str = DEFAULT_RESOURCE_PREFIX,
                      strict: bool = False) -> ResourceList:
    try:
        parsed = gojson.parse(text)
    except gojson.JsonSyntaxError as exc:
        raise ConfigError([f"{source}: {exc}"]) from None
    problems = _Problems(source, strict)
    if parsed.replaced_bytes:
        problems.notice("", f"{parsed.replaced_bytes} byte(s) of invalid UTF-8 in strings", gojson.NO_VALUE,
                        "read as U+FFFD, as upstream reads them")
    return _parse_tree(parsed.value, problems, default_prefix)


def parse_config(data: Any, *, source: str = "<config>", default_prefix: str = DEFAULT_RESOURCE_PREFIX,
                 strict: bool = False) -> ResourceList:
    """An already-loaded document (dicts and lists), checked as `parse_config_text` checks text."""
    return _parse_tree(gojson.as_tree(data), _Problems(source, strict), default_prefix)


def _parse_tree(tree: Any, problems: _Problems, default_prefix: str) -> ResourceList:
    if tree is not None and not isinstance(tree, gojson.Pairs):
        problems.add("", "must be a JSON object with a resourceList", gojson.plain_or_text(tree))
        problems.raise_if_any()
    data, report = gojson.decode(_CONFIG, tree)
    problems.take(report)
    if report.problems:  # upstream's json.Unmarshal failed: nothing else is checked
        problems.raise_if_any()
    raw_list = (data or {}).get("resourceList")
    if not raw_list:
        problems.notice("resourceList", "no resources", raw_list, "nothing is advertised")
    if default_prefix and not _PREFIX.match(default_prefix):
        problems.add("(--resource-prefix)", "must be a DNS subdomain", default_prefix)
    resources: list[ResourceConfig] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_list or ()):
        resource = _parse_resource(raw, f"resourceList[{i}]", _written(tree, i), problems, default_prefix)
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
    return ResourceList(tuple(resources), problems.source, tuple(problems.warnings))


def _written(tree: Any, index: int) -> dict[str, str]:
    """For resource `index`: canonical field name -> the key as the file spells it (last wins)."""
    spelled: dict[str, str] = {}
    for key, value in tree if isinstance(tree, gojson.Pairs) else ():
        if _CONFIG.lookup(key) is not None and isinstance(value, list) and index < len(value):
            item = value[index]
            for rkey, _ in item if isinstance(item, gojson.Pairs) else ():
                f = _RESOURCE.lookup(rkey)
                if f is not None:
                    spelled[f.name] = rkey
    return spelled


_IGNORED = gojson.IGNORED
_SKIPPED = "resource skipped, as upstream skips it"
_NEVER = "matches no device, as upstream matches none"


class _Problems:
    """Problems (refused) and warnings (upstream accepts them): one line each. In strict mode
    every warning is a problem too."""

    def __init__(self, source: str, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def add(self, path: str, message: str, value: Any) -> None:
        self.lines.append(gojson.Problem(path, message, value).line(self.source))

    def notice(self, path: str, message: str, value: Any, consequence: str = _IGNORED) -> None:
        """What upstream lets through: a warning saying what comes of it, or (strict) a problem."""
        if self.strict:
            self.add(path, message, value)
        else:
            self.warnings.append(gojson.Problem(path, f"{message}: {consequence}", value).line(self.source))

    def take(self, report: gojson.Report) -> None:
        for p in report.problems:
            self.add(p.path, p.message, p.value)
        for p in report.notices:
            self.notice(p.path, p.message, p.value, p.consequence or _IGNORED)

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError(self.lines)


def _parse_resource(raw: dict[str, Any], path: str, spelled: dict[str, str], problems: _Problems,
                    default_prefix: str) -> ResourceConfig | None:
    before = len(problems.lines)

    def at(name: str) -> str:
        return gojson.member(path, spelled.get(name, name))

    name = raw.get("resourceName", "")
    if not _RESOURCE_NAME.match(name):
        problems.add(at("resourceName"), "required; letters, digits, '_' and '-' only", raw.get("resourceName"))
    prefix = raw.get("resourcePrefix") or default_prefix
    if not _PREFIX.match(prefix):
        problems.add(at("resourcePrefix"), "must be a DNS subdomain such as intel.com", prefix)
    device_type = _enum(raw, "deviceType", DeviceType, DeviceType.NET_DEVICE, at("deviceType"), problems)
    policy = _enum(raw, "allocatePolicy", AllocatePolicy, AllocatePolicy.PACKED, at("allocatePolicy"), problems)
    served_by = _enum(raw, "servedBy", ServedBy, ServedBy.DEVICE_PLUGIN, at("servedBy"), problems)
    info = _parse_additional_info(raw.get("additionalInfo") or {}, at("additionalInfo"), problems)
    if len(problems.lines) > before:
        return None
    selectors = _parse_selectors(raw.get("selectors"), at("selectors"), device_type, problems)
    if selectors is None or len(problems.lines) > before:
        return None
    return ResourceConfig(
        resource_name=name,
        resource_prefix=prefix,
        device_type=device_type,
        exclude_topology=raw.get("excludeTopology", False),
        selectors=selectors,
        additional_info=info,
        allocate_policy=policy,
        served_by=served_by,
    )


def _enum(raw: dict[str, Any], key: str, enum: type[_E], default: _E, path: str, problems: _Problems) -> _E:
    value = raw.get(key) or default  # "" is upstream's unset
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        problems.add(path, f"must be one of {allowed}", value)
        return default


def _parse_selectors(raw: Any, path: str, device_type: DeviceType,
                     problems: _Problems) -> tuple[Selector, ...] | None:
    """Upstream's parseObjectOrSlice: one object or a non-empty list of them. Selectors Go cannot
    decode make upstream skip the resource with a warning: so does this (a problem when strict)."""
    schema = _SELECTOR_STRUCTS[device_type]
    if raw is None:
        return (Selector(),)
    kind: gojson.GoType
    if isinstance(raw, gojson.Pairs):
        kind = gojson.Ptr(schema)
    elif isinstance(raw, list) and raw:
        kind = gojson.Slice(gojson.Ptr(schema))
    else:
        problems.notice(path, "must be an object or a non-empty list of objects", gojson.plain_or_text(raw), _SKIPPED)
        return None
    decoded, report = gojson.decode(kind, raw, path)
    values = decoded if isinstance(decoded, list) else [decoded]
    if report.problems:
        for p in report.problems:
            problems.notice(p.path, p.message, p.value, _SKIPPED)
        return None
    for i, value in enumerate(values):
        if value is None:
            problems.add(f"{path}[{i}]", "must be an object (upstream crashes on null)", None)
            return None
    for p in report.notices:
        message = _why_ignored(p.path, device_type) if p.consequence == gojson.IGNORED else p.message
        problems.notice(p.path, message, p.value, p.consequence)
    many = isinstance(decoded, list)
    return tuple(_parse_selector(v, f"{path}[{i}]" if many else path, device_type, problems)
                 for i, v in enumerate(values))


def _why_ignored(path: str, device_type: DeviceType) -> str:
    key = path.rsplit(".", 1)[-1]
    other = any(gojson.fold(key) in {gojson.fold(n) for n in fields} for fields in SELECTOR_FIELDS.values())
    if other:
        return f"not a selector of deviceType {device_type.value}"
    return "unknown selector"


def _parse_selector(raw: dict[str, Any], path: str, device_type: DeviceType, problems: _Problems) -> Selector:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        field_path = gojson.member(path, key)
        if device_type is DeviceType.AUX_NET_DEVICE and key in _AUX_IGNORED and value:
            problems.notice(field_path, "has no effect on an auxNetDevice", value,
                            "upstream decodes it, never applies it")
        elif key == "vdpaType":
            if value and value not in _VDPA_TYPES:
                problems.notice(field_path, f"must be one of {', '.join(sorted(_VDPA_TYPES))}", value, _NEVER)
            values[key] = value or None
        elif isinstance(value, list):
            values[key] = _check_list(key, value, field_path, problems)
        else:
            values[key] = value
    if device_type is DeviceType.AUX_NET_DEVICE:
        types = values.get("auxTypes", ())
        if not types:
            problems.add(gojson.member(path, "auxTypes"), "required for an auxNetDevice (upstream: \"sf\")", None)
        for i, t in enumerate(types):
            if t != "sf":
                problems.add(f"{gojson.member(path, 'auxTypes')}[{i}]", "only \"sf\" is supported, as upstream", t)
    if values.get("isRdma") and values.get("vdpaType"):
        problems.add(path, "isRdma and vdpaType exclude each other, as upstream", {"isRdma": True,
                                                                                "vdpaType": values["vdpaType"]})
    return Selector(
        vendors=tuple(v.lower() for v in values.get("vendors", ())),
        devices=tuple(v.lower() for v in values.get("devices", ())),
        drivers=tuple(values.get("drivers", ())),
        pci_addresses=tuple(v.lower() for v in values.get("pciAddresses", ())),
        pf_names=tuple(values.get("pfNames", ())),
        root_devices=tuple(values.get("rootDevices", ())),
        link_types=tuple(values.get("linkTypes", ())),
        is_rdma=values.get("isRdma", False),
        need_vhost_net=values.get("needVhostNet", False) and device_type is not DeviceType.AUX_NET_DEVICE,
        ddp_profiles=tuple(values.get("ddpProfiles", ())),
        vdpa_type=values.get("vdpaType"),
        pkeys=tuple(v.lower() for v in values.get("pKeys", ())),
        acpi_indexes=tuple(values.get("acpiIndexes", ())) if device_type is not DeviceType.AUX_NET_DEVICE else (),
        aux_types=tuple(values.get("auxTypes", ())),
    )


def _check_list(key: str, value: list[str], path: str, problems: _Problems) -> tuple[Any, ...]:
    """Entries in a form no device has match nothing, upstream as here: a warning, kept as written."""
    if key in ("vendors", "devices"):
        _each(value, path, problems, lambda v: bool(_HEX4.match(v)), "must be 4 hex digits")
    elif key == "pciAddresses":
        _each(value, path, problems, lambda v: bool(_PCI_ADDRESS.match(v)),
              "must be a PCI address like 0000:3b:02.4")
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
            problems.notice(f"{path}[{i}]", message, v, _NEVER)


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
            problems.notice(f"{path}[{i}]", str(exc), entry, _NEVER)
            result.append(IndexedName(entry.partition("#")[0], frozenset()))  # selects no VF, as upstream
            continue
        if addresses and not _PCI_ADDRESS.match(name):
            problems.notice(f"{path}[{i}]", "must be a PCI address like 0000:3b:00.0, optionally with #ranges", entry,
                            _NEVER)
        elif not name:
            problems.notice(f"{path}[{i}]", "has no name before '#'", entry, _NEVER)
        if any(r.name.lower() == name.lower() for r in result):
            problems.notice(f"{path}[{i}]", f"{name} is named by an earlier entry", entry,
                            "never applies: upstream uses the first entry for a PF only")
        result.append(IndexedName(name.lower() if addresses else name, indexes))
    return tuple(result)


def _parse_additional_info(raw: dict[str, dict[str, str]], path: str,
                           problems: _Problems) -> dict[str, dict[str, str]]:
    info: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        if key != "*" and not _PCI_ADDRESS.match(key):
            problems.notice(gojson.member(path, key), "key must be a PCI address or '*'", key, "applies to no device")
            continue
        info[key.lower() if key != "*" else key] = dict(value or {})
    return info


def check_resource_prefix(flag: str, value: str) -> None:
    """A `--resource-prefix` flag checked once, as a flag (the config's resources that take it as their
    default would each repeat the complaint under a field they do not have)."""
    if value and not _PREFIX.match(value):
        from sriovkit.errors import UserError

        raise UserError(f"{flag} {value!r}: must be a DNS subdomain such as intel.com")
