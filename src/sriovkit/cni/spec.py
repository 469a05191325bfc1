"""The CNI protocol itself: versions, commands, error codes, results per version.

Pure: no I/O. A `Result` is held in one version-neutral form (the 1.1.0 shape)
and rendered for whichever version the caller's config asked for.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sriovkit.errors import SriovkitError
from sriovkit.shim import wire

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = "1.1.0"
# first version that knows each command (CHECK came with 0.4.0, STATUS and GC with 1.1.0)
COMMAND_SINCE = {"ADD": "0.3.0", "DEL": "0.3.0", "CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}
COMMANDS = frozenset({*COMMAND_SINCE, "VERSION"})
# what an interface name may be (the kernel's IFNAMSIZ, and no path tricks: names become file names)
_IFNAME = re.compile(r"^[A-Za-z0-9_.\-@]{1,15}$")


class ErrorCode(enum.IntEnum):
    """The spec's well-known error codes; 100 and above are this plugin's own."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENV = wire.CODE_INVALID_ENV
    IO_FAILURE = wire.CODE_IO_FAILURE
    DECODE_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN = wire.CODE_TRY_AGAIN
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    INTERNAL = wire.CODE_INTERNAL  # libcni's ErrInternal: skel's answer for an untyped error
    # plugin-specific
    DEVICE_UNUSABLE = 100  # no such device, wrong kind, or already given to another pod
    SETTING_REFUSED = 101  # the NIC, driver or kernel refused a change
    IPAM_FAILED = 102
    CHECK_FAILED = 103


class CniError(SriovkitError):
    """A failure the runtime is told about as the spec's error JSON."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}: {details}" if details else msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_json(self, version: str) -> dict[str, Any]:
        body: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            body["details"] = self.details
        return body


def version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


def check_version(version: str, command: str) -> None:
    """Refuse a version this plugin does not speak, or a command the version lacks."""
    if version not in SUPPORTED_VERSIONS:
        raise CniError(ErrorCode.INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported",
                       f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    since = COMMAND_SINCE.get(command)
    if since is not None and version_key(version) < version_key(since):
        raise CniError(ErrorCode.INCOMPATIBLE_VERSION, f"{command} needs cniVersion {since} or newer",
                       f"config has cniVersion {version}")


def best_common_version(requested: str, offered: list[str]) -> str | None:
    """The newest version both sides speak that is not newer than `requested`."""
    usable = [v for v in offered if v in SUPPORTED_VERSIONS and version_key(v) <= version_key(requested)]
    return max(usable, key=version_key) if usable else None


def version_reply(version: str) -> dict[str, Any]:
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


# -- results ----------------------------------------------------------------------------
@dataclass(slots=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None
    pci_id: str = ""


@dataclass(slots=True)
class IpConfig:
    address: str  # CIDR: 10.1.0.5/24
    gateway: str | None = None
    interface: int | None = None

    @property
    def family(self) -> int:
        return ipaddress.ip_interface(self.address).version


@dataclass(slots=True)
class Route:
    dst: str
    gw: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # 1.1.0 mtu, advmss, priority, table, scope


@dataclass(slots=True)
class Result:
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IpConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: dict[str, Any] = field(default_factory=dict)


_ROUTE_EXTRAS_1_1 = ("mtu", "advmss", "priority", "table", "scope")


def render_result(result: Result, version: str) -> dict[str, Any]:
    """The result JSON object exactly as `version` defines it."""
    v11 = version_key(version) >= (1, 1, 0)
    old = version_key(version) < (1, 0, 0)
    out: dict[str, Any] = {"cniVersion": version}
    if result.interfaces:
        out["interfaces"] = [_render_interface(i, v11) for i in result.interfaces]
    if result.ips:
        out["ips"] = [_render_ip(ip, old) for ip in result.ips]
    if result.routes:
        out["routes"] = [_render_route(r, v11) for r in result.routes]
    out["dns"] = dict(result.dns)
    return out


def _render_interface(iface: Interface, v11: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        out["mac"] = iface.mac
    if v11 and iface.mtu:
        out["mtu"] = iface.mtu
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    if v11 and iface.pci_id:
        out["pciID"] = iface.pci_id
    return out


def _render_ip(ip: IpConfig, old: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if old:
        out["version"] = str(ip.family)
    if ip.interface is not None:
        out["interface"] = ip.interface
    out["address"] = ip.address
    if ip.gateway:
        out["gateway"] = ip.gateway
    return out


def _render_route(route: Route, v11: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": route.dst}
    if route.gw:
        out["gw"] = route.gw
    if v11:
        out.update({k: route.extra[k] for k in _ROUTE_EXTRAS_1_1 if k in route.extra})
    return out


def parse_result(data: Mapping[str, Any], what: str) -> Result:
    """A result of any supported version (an IPAM plugin's, or a prevResult) in neutral form."""
    try:
        interfaces = [Interface(name=str(i.get("name", "")), mac=str(i.get("mac", "")),
                                sandbox=str(i.get("sandbox", "")), mtu=i.get("mtu"), pci_id=str(i.get("pciID", "")))
                      for i in data.get("interfaces") or []]
        ips = []
        for ip in data.get("ips") or []:
            ipaddress.ip_interface(ip["address"])  # validates
            ips.append(IpConfig(address=str(ip["address"]), gateway=ip.get("gateway") or None,
                                interface=ip.get("interface")))
        routes = []
        for r in data.get("routes") or []:
            ipaddress.ip_network(r["dst"], strict=False)
            routes.append(Route(dst=str(r["dst"]), gw=r.get("gw") or None,
                                extra={k: r[k] for k in _ROUTE_EXTRAS_1_1 if k in r}))
        dns = data.get("dns") or {}
        if not isinstance(dns, dict):
            raise TypeError("dns is not an object")
        return Result(interfaces=interfaces, ips=ips, routes=routes, dns=dict(dns))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, f"{what}: malformed result", str(exc)) from None


def dumps(obj: Mapping[str, Any]) -> bytes:
    """One canonical encoding, so the agent and the standalone plugin print the same bytes."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode() + b"\n"


def valid_ifname(value: str) -> bool:
    """Whether `value` can name an interface (CNI_IFNAME, the netconf's if0name)."""
    return bool(_IFNAME.fullmatch(value)) and value not in (".", "..")
