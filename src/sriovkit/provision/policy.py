"""The node policy file: which PFs get how many VFs, and which driver each VF range gets.

In the spirit of the SR-IOV network operator's SriovNetworkNodePolicy (camelCase keys, a
`nicSelector`, `#` VF ranges in `pfNames`), for one node. See docs/provisioning.md and docs/configuration.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from sriovkit import gojson
from sriovkit.errors import SriovkitError
from sriovkit.host.model import VFIO_DRIVER
from sriovkit.resources.ranges import RangeError, parse_indexed_names

MAX_MTU = 65535
MIN_MTU = 68


class PolicyError(SriovkitError, ValueError):
    """A policy file that cannot be used: one line per problem, each naming file, field and value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class DeviceType(StrEnum):
    NETDEVICE = "netdevice"  # the VF's own kernel driver (igbvf, iavf, mlx5_core ...)
    VFIO_PCI = "vfio-pci"

    @property
    def driver(self) -> str | None:
        """The driver to bind, or None for the kernel's default driver of the VF."""
        return VFIO_DRIVER if self is DeviceType.VFIO_PCI else None


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class NicSelector(_Model):
    """Which PFs a policy applies to; every field given must match (as the operator does)."""

    pf_names: tuple[str, ...] = ()  # interface names, optionally with a VF range: "eth0#0-1"
    root_devices: tuple[str, ...] = ()  # PF PCI addresses
    vendor: str | None = None
    device_id: str | None = Field(default=None, alias="deviceID")

    @field_validator("vendor", "device_id")
    @classmethod
    def _hex4(cls, value: str | None) -> str | None:
        if value is None:
            return None
        v = value.lower().removeprefix("0x")
        if len(v) != 4 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError(f"must be 4 hex digits, got {value!r}")
        return v

    @field_validator("pf_names")
    @classmethod
    def _ranges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                name, _ = parse_indexed_names(entry)
            except RangeError as exc:
                raise ValueError(f"{entry!r}: {exc}") from None
            if not name:
                raise ValueError(f"{entry!r}: no interface name before '#'")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> NicSelector:
        if not (self.pf_names or self.root_devices or self.vendor or self.device_id):
            raise ValueError("give at least one of pfNames, rootDevices, vendor, deviceID")
        return self


class NodePolicy(_Model):
    """One rule: the PFs it selects get `num_vfs` VFs; its VF range gets `device_type`'s driver."""

    name: str = Field(min_length=1)
    resource_name: str | None = None  # the device plugin pool these VFs feed
    nic_selector: NicSelector
    num_vfs: int = Field(ge=0, le=4096)
    device_type: DeviceType = DeviceType.NETDEVICE
    mtu: int | None = Field(default=None, ge=MIN_MTU, le=MAX_MTU)  # PF and its netdevice VFs

    def vf_range(self, pf_netdev: str | None) -> frozenset[int] | None:
        """The VF indexes this policy claims on a PF (None: all of them)."""
        for entry in self.nic_selector.pf_names:
            name, indexes = parse_indexed_names(entry)
            if name == pf_netdev:
                return indexes
        return None


class Policy(_Model):
    """A node's whole provisioning policy."""

    policies: tuple[NodePolicy, ...] = ()
    # PFs whose interface carries the node's default route are left alone unless this is true
    allow_default_route_pf: bool = False

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        seen: set[str] = set()
        for p in self.policies:
            if p.name in seen:
                raise ValueError(f"policy name {p.name!r} used twice")
            seen.add(p.name)
        return self


def load_policy(path: str | Path, *, strict: bool = False, warn: Callable[[str], None] | None = None) -> Policy:
    """Parse and validate a policy file (YAML, or JSON which YAML also reads)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse_policy(raw, str(path), strict=strict, warn=warn)


def parse_policy(text: str | bytes, source: str = "<policy>", *, strict: bool = False,
                 warn: Callable[[str], None] | None = None) -> Policy:
    """A policy, read with the decoder every config shares (`sriovkit.gojson`: keys matched as Go
    matches them, the last of duplicates winning). Unknown fields are warnings passed to `warn`
    (default: logged), problems with `strict`."""
    tree = _tree(text, source)
    if not isinstance(tree, gojson.Pairs):
        kind = "list" if isinstance(tree, list) else type(gojson.plain_or_text(tree)).__name__
        raise PolicyError([f"{source}: expected a mapping with a 'policies' list, got {kind}"])
    data, report = gojson.decode(_SCHEMA, tree)
    problems = [p.line(source) for p in report.problems]
    if strict:
        problems += [p.line(source) for p in report.notices]
    refused = {p.path for p in report.problems}  # a field Go refused is not "missing" as well
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(source, err) for err in exc.errors() if not _follows(_path(err["loc"]), refused)]
    if problems:
        raise PolicyError(problems)
    for p in report.notices:
        (warn or _log_warning)(gojson.Problem(p.path, f"{p.message}: {p.consequence}", p.value).line(source))
    return policy


def _log_warning(line: str) -> None:
    logging.getLogger("sriovkit.provision").warning("policy: %s", line)


def _tree(text: str | bytes, source: str) -> Any:
    is_json = source.endswith(".json")
    try:
        if is_json:
            return gojson.parse(text).value
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        if gojson.nesting_depth(raw) > gojson.MAX_DEPTH:
            raise gojson.JsonSyntaxError(f"nested more than the {gojson.MAX_DEPTH} levels accepted")
        return gojson.as_tree(yaml.safe_load(raw))
    except (ValueError, yaml.YAMLError, RecursionError) as exc:  # JsonSyntaxError and TooLarge are ValueErrors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, RecursionError):
            first = "nested too deep"
        raise PolicyError([f"{source}: not valid {'JSON' if is_json else 'YAML'}: {first}"]) from None


_SCHEMA = gojson.schema_of(Policy)
_PYDANTIC_WORDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "greater_than_equal": lambda ctx: f"must be at least {ctx['ge']}",
    "less_than_equal": lambda ctx: f"must be at most {ctx['le']}",
    "string_too_short": lambda ctx: "must not be empty",
    "missing": lambda ctx: "required",
    "enum": lambda ctx: f"must be one of {ctx['expected'].replace(chr(39), '').replace(' or ', ', ')}",
}


def _follows(path: str, refused: set[str]) -> bool:
    """Whether a pydantic error at `path` only follows from a value the decoder refused there or below."""
    return any(r == path or r.startswith((f"{path}.", f"{path}[")) for r in refused)


def _path(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _problem(source: str, err: Any) -> str:
    """A pydantic error worded as every other config problem is."""
    loc = _path(err["loc"])
    words = _PYDANTIC_WORDS.get(err["type"])
    msg = words(err.get("ctx") or {}) if words else str(err["msg"]).removeprefix("Value error, ")
    where = f"{source}: {loc}: " if loc else f"{source}: "
    value = err.get("input")
    shown = "" if isinstance(value, dict) or err["type"] == "missing" else f" (value: {gojson.show(value)})"
    return f"{where}{msg}{shown}"
