"""The network config on stdin: upstream sriov-cni's fields, meanings and defaults.

A NetworkAttachmentDefinition written for upstream works unchanged: unknown
fields are ignored as upstream ignores them, and the values upstream accepts
are accepted here. What upstream rejects one error at a time is reported here
all at once, each problem naming the field and the value.

Precedence as upstream: `runtimeConfig.mac` > `MAC` in CNI_ARGS > `mac`.
The device is `deviceID` (what Multus fills in), else `pciBusID`, else
`runtimeConfig.deviceID`. runtimeConfig keys are matched case-insensitively
(containerd sends Go-style capitalised keys).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.netlink.model import LinkState, VlanProto

_PCI_FULL = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_PCI_SHORT = re.compile(r"^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_DRIVER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LOG_LEVELS = ("panic", "error", "warning", "info", "debug")
_ON_OFF = {"on": True, "off": False}
_VLAN_PROTOS = {"802.1q": VlanProto.DOT1Q, "802.1ad": VlanProto.DOT1AD}
_LINK_STATES = {"auto": LinkState.AUTO, "enable": LinkState.ENABLE, "disable": LinkState.DISABLE}
MAX_VLAN = 4094
MAX_QOS = 7
MIN_MTU = 68
MAX_MTU = 65535


@dataclass(frozen=True, slots=True)
class NetConf:
    """A validated config. `None` means "not given: leave the VF's current value"."""

    cni_version: str
    name: str
    device_id: str | None
    ipam: dict[str, Any] = field(default_factory=dict)
    vlan: int | None = None
    vlan_qos: int | None = None
    vlan_proto: VlanProto | None = None
    mac: str | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: LinkState | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None
    mtu: int | None = None
    log_level: str = "info"
    log_file: str = ""
    device_info_file: str = ""
    driver: str | None = None  # sriovkit extension: bind the VF to this driver for the attachment
    raw: Mapping[str, Any] = field(default_factory=dict)
    prev_result: Mapping[str, Any] | None = None

    @property
    def ipam_type(self) -> str:
        return str(self.ipam.get("type") or "")


def decode(stdin: bytes) -> dict[str, Any]:
    """The JSON object on stdin, or the spec's decode error."""
    try:
        data = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, "network config on stdin is not valid JSON", str(exc)) from None
    if not isinstance(data, dict):
        raise CniError(ErrorCode.DECODE_FAILURE, "network config on stdin is not a JSON object",
                       f"got {type(data).__name__}")
    return data


def runtime_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """runtimeConfig with lower-cased keys (containerd capitalises them)."""
    rc = data.get("runtimeConfig")
    if not isinstance(rc, dict):
        return {}
    return {str(k).lower(): v for k, v in rc.items()}


def normalize_pci_address(value: str) -> str | None:
    v = value.lower()
    if _PCI_SHORT.fullmatch(v):
        v = "0000:" + v
    return v if _PCI_FULL.fullmatch(v) else None


def parse_netconf(data: Mapping[str, Any], *, cni_args: Mapping[str, str] | None = None,
                  need_device: bool = True) -> NetConf:
    """Validate every field; raise one CniError listing every problem."""
    problems: list[str] = []
    p = _Parser(data, problems)
    rc = runtime_config(data)
    version = p.string("cniVersion", required=True)
    name = p.string("name", required=True)
    device_id = _device_id(data, rc, problems, need_device)
    vlan, qos, proto = _vlan(p, problems)
    rates = (p.integer("min_tx_rate", 0, None), p.integer("max_tx_rate", 0, None))
    if rates[0] and rates[1] and rates[0] > rates[1]:
        problems.append(f"min_tx_rate {rates[0]} is above max_tx_rate {rates[1]}")
    conf = NetConf(
        cni_version=version or "",
        name=name or "",
        device_id=device_id,
        ipam=_ipam(data, problems),
        vlan=vlan, vlan_qos=qos, vlan_proto=proto,
        mac=_mac(data, rc, cni_args or {}, problems),
        spoofchk=p.choice("spoofchk", _ON_OFF),
        trust=p.choice("trust", _ON_OFF),
        link_state=p.choice("link_state", _LINK_STATES),
        min_tx_rate=rates[0], max_tx_rate=rates[1],
        mtu=p.integer("mtu", MIN_MTU, MAX_MTU),
        log_level=_log_level(p),
        log_file=p.string("logFile") or "",
        device_info_file=_device_info_file(rc, problems),
        driver=_driver(p, problems),
        raw=data,
        prev_result=data.get("prevResult") if isinstance(data.get("prevResult"), dict) else None,
    )
    if problems:
        raise CniError(ErrorCode.INVALID_CONFIG, "invalid network config", "; ".join(problems))
    return conf


class _Parser:
    """Typed reads of top-level fields that record problems instead of raising."""

    def __init__(self, data: Mapping[str, Any], problems: list[str]) -> None:
        self.data = data
        self.problems = problems

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                self.problems.append(f"{key} is required")
            return None
        if not isinstance(value, str):
            self.problems.append(f"{key} {json.dumps(value)} must be a string")
            return None
        return value

    def integer(self, key: str, lo: int, hi: int | None) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.append(f"{key} {json.dumps(value)} must be an integer")
            return None
        if value < lo or (hi is not None and value > hi):
            bound = f"in the range {lo}-{hi}" if hi is not None else f"{lo} or more"
            self.problems.append(f"{key} {value} invalid: value must be {bound}")
            return None
        return value

    def choice(self, key: str, allowed: Mapping[str, Any]) -> Any:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.lower() in allowed:
            return allowed[value.lower()]
        names = ", ".join(repr(k) for k in allowed)
        self.problems.append(f"{key} {json.dumps(value)} invalid: value must be one of {names}")
        return None


def _device_id(data: Mapping[str, Any], rc: Mapping[str, Any], problems: list[str], need: bool) -> str | None:
    given = [(k, v) for k, v in (("deviceID", data.get("deviceID")), ("pciBusID", data.get("pciBusID")),
                                 ("runtimeConfig.deviceID", rc.get("deviceid"))) if v not in (None, "")]
    if not given:
        if need:
            problems.append("deviceID is required (the VF's PCI address, e.g. 0000:3b:02.4)")
        return None
    found: dict[str, str] = {}
    for key, value in given:
        address = normalize_pci_address(value) if isinstance(value, str) else None
        if address is None:
            problems.append(f"{key} {json.dumps(value)} is not a PCI address (like 0000:3b:02.4)")
        else:
            found[key] = address
    if len(set(found.values())) > 1:
        problems.append("device given twice with different values: "
                        + ", ".join(f"{k} {v}" for k, v in found.items()))
    return next(iter(found.values()), None)


def _vlan(p: _Parser, problems: list[str]) -> tuple[int | None, int | None, VlanProto | None]:
    vlan = p.integer("vlan", 0, MAX_VLAN)
    qos = p.integer("vlanQoS", 0, MAX_QOS)
    proto = p.choice("vlanProto", _VLAN_PROTOS)
    if "vlan" not in p.data:
        if "vlanQoS" in p.data:
            problems.append("vlanQoS needs vlan to be set")
        if "vlanProto" in p.data:
            problems.append("vlanProto needs vlan to be set")
        return None, None, None
    if vlan is None:
        return None, None, None
    qos = qos or 0
    proto = proto or VlanProto.DOT1Q
    if vlan == 0 and qos:
        problems.append(f"vlanQoS {qos} needs a non-zero vlan")
    if vlan == 0 and proto is VlanProto.DOT1AD:
        problems.append("vlanProto \"802.1ad\" needs a non-zero vlan")
    return vlan, qos, proto


def _mac(data: Mapping[str, Any], rc: Mapping[str, Any], cni_args: Mapping[str, str],
         problems: list[str]) -> str | None:
    candidates = (("runtimeConfig.mac", rc.get("mac")), ("CNI_ARGS MAC", cni_args.get("MAC")), ("mac", data.get("mac")))
    for key, value in candidates:
        if value in (None, ""):
            continue
        if not isinstance(value, str) or not _MAC.fullmatch(value.lower()):
            problems.append(f"{key} {json.dumps(value)} is not a MAC address (like 02:00:00:00:00:01)")
            return None
        mac = value.lower()
        if int(mac[:2], 16) & 1:
            problems.append(f"{key} {value} is a multicast address; a VF needs a unicast one")
            return None
        return mac
    return None


def _ipam(data: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    ipam = data.get("ipam")
    if ipam is None:
        return {}
    if not isinstance(ipam, dict):
        problems.append(f"ipam {json.dumps(ipam)} must be an object")
        return {}
    kind = ipam.get("type")
    if kind not in (None, "") and (not isinstance(kind, str) or "/" in kind or kind in (".", "..")):
        problems.append(f"ipam.type {json.dumps(kind)} must be a plugin name (no '/')")
        return {}
    return ipam


def _log_level(p: _Parser) -> str:
    level = p.choice("logLevel", {lvl: lvl for lvl in LOG_LEVELS})
    return str(level) if level else "info"


def _device_info_file(rc: Mapping[str, Any], problems: list[str]) -> str:
    value = rc.get("cnideviceinfofile")
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not value.startswith("/") or "/../" in f"{value}/":
        problems.append(f"runtimeConfig.CNIDeviceInfoFile {json.dumps(value)} must be an absolute path")
        return ""
    return value


def _driver(p: _Parser, problems: list[str]) -> str | None:
    value = p.string("driver")
    if value is not None and not _DRIVER.fullmatch(value):
        problems.append(f"driver {json.dumps(value)} is not a driver name")
        return None
    return value


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS ("K=V;K2=V2") as a dict; malformed pairs are the caller's invalid env."""
    out: dict[str, str] = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(ErrorCode.INVALID_ENV, "CNI_ARGS is malformed", f"pair {pair!r} has no KEY=VALUE form")
        out[key.strip()] = value.strip()
    return out
