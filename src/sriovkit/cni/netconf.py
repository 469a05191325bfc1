"""The network config on stdin: upstream sriov-cni's fields, meanings and defaults.

A NetworkAttachmentDefinition written for upstream works unchanged: the config is decoded as
upstream's Go structs decode it (`sriovkit.gojson`: keys matched exactly, then case-insensitively,
the last of duplicate keys winning; unknown fields ignored, and listed in `NetConf.warnings`).
A wrong JSON type at a known field is refused, as Go refuses it. What upstream rejects one error
at a time is reported here all at once, each problem naming the field and the value, and so is
what cannot work on a VF (a zero, multicast or broadcast MAC; a rate the kernel's u32 cannot hold).

Precedence as upstream: `runtimeConfig.mac` > `MAC` in CNI_ARGS > `mac`.
The device is `deviceID` (what Multus fills in), else `pciBusID`, else
`runtimeConfig.deviceID`; without any of them, the seeds' PF (`if0`, or `master`): the plugin then
picks a free VF of it (`sriovkit.cni.pick`). The seeds' other fields: `if0name` (the pod-side name,
overriding CNI_IFNAME), `l2enable` (no IPAM), `dpdk` (`dpdk_driver` bound for the attachment,
`kernel_driver` expected back after it, `dpdk_tool` ignored: we bind through sysfs) and `cniDir`
(where each attachment's record is published per network namespace).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sriovkit import gojson, nodepaths
from sriovkit.cni import spec
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.netlink.model import MAX_QOS, MAX_VLAN, ZERO_MAC, LinkState, VlanProto

_PCI_FULL = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_PCI_SHORT = re.compile(r"^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_DRIVER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LOG_LEVELS = ("panic", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")
_ON_OFF = {"on": True, "off": False}
_VLAN_PROTOS = {"802.1q": VlanProto.DOT1Q, "802.1ad": VlanProto.DOT1AD}
_LINK_STATES = {"auto": LinkState.AUTO, "enable": LinkState.ENABLE, "disable": LinkState.DISABLE}
MIN_MTU = 68
MAX_MTU = 65535
MAX_RATE = (1 << 32) - 1  # IFLA_VF_RATE's min/max_tx_rate are u32 (Mbit/s)
_BROADCAST = "ff:ff:ff:ff:ff:ff"

# upstream's types: containernetworking's types.NetConf embedded with sriov-cni's SriovNetConf,
# plus sriovkit's own fields (pciBusID, driver; runtimeConfig.deviceID/CNIDeviceInfoFile)
_S, _B, _INT = gojson.String(), gojson.Bool(), gojson.Ptr(gojson.Int())
_F = gojson.Field
_RUNTIME_CONFIG = gojson.struct(_F("mac", _S), _F("deviceID", _S), _F("CNIDeviceInfoFile", _S),
                                unknown="")  # the runtime passes every capability it has
_IPAM = gojson.struct(_F("type", _S), unknown="", keep_unknown=True)  # the rest is the IPAM plugin's
_DNS = gojson.struct(*(_F(n, gojson.Slice(_S)) for n in ("nameservers", "search", "options")), _F("domain", _S))
_GC_ATTACHMENT = gojson.struct(_F("containerID", _S), _F("ifname", _S))
_VF_STATE = gojson.struct(*(_F(n, _S) for n in ("HostIFName", "AdminMAC", "EffectiveMAC")),
                          *(_F(n, _B) for n in ("SpoofChk", "Trust")),
                          *(_F(n, gojson.Int()) for n in ("Vlan", "VlanQoS", "VlanProto", "MinTxRate", "MaxTxRate",
                                                          "MTU")),
                          _F("LinkState", gojson.Int(32, signed=False)))
_UPSTREAM_STATE = "upstream's own bookkeeping, not read from a NAD"
_DPDK = gojson.struct(_F("kernel_driver", _S), _F("dpdk_driver", _S), _F("dpdk_tool", _S))
DEFAULT_CNI_DIR = nodepaths.CNI_STATE_DIR  # the seeds' default for cniDir
NETCONF = gojson.struct(
    _F("cniVersion", _S), _F("name", _S), _F("type", _S), _F("capabilities", gojson.Map(_B)), _F("ipam", _IPAM),
    _F("dns", _DNS), _F("prevResult", gojson.Object()),
    _F("cni.dev/valid-attachments", gojson.Slice(_GC_ATTACHMENT)),
    _F("cni.dev/attachments", gojson.Slice(_GC_ATTACHMENT)),  # the name libcni also sends (cni#1101)
    _F("OrigVfState", _VF_STATE, note=_UPSTREAM_STATE),
    # `Master` is upstream's bookkeeping too (it derives it from deviceID, which wins here as well),
    # but the seeds' plugin read it as the PF to pick a VF from, as it read `if0`
    _F("Master", _S), _F("if0", _S), _F("if0name", _S), _F("l2enable", _B), _F("dpdk", _DPDK), _F("cniDir", _S),
    _F("mac", _S), _F("mtu", _INT), _F("vlan", _INT), _F("vlanQoS", _INT), _F("vlanProto", gojson.Ptr(_S)),
    _F("deviceID", _S), _F("VFID", gojson.Int(), note=_UPSTREAM_STATE),
    _F("min_tx_rate", _INT), _F("max_tx_rate", _INT), _F("spoofchk", _S), _F("trust", _S), _F("link_state", _S),
    _F("runtimeConfig", _RUNTIME_CONFIG), _F("logLevel", _S), _F("logFile", _S),
    _F("logFormat", gojson.Raw()),  # sriovkit's; upstream ignores it whatever it holds: read leniently
    _F("pciBusID", _S), _F("driver", _S),
    keep_unknown=True,
)


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
    log_format: str = "text"  # sriovkit extension: "json" writes logFile lines as JSON objects
    device_info_file: str = ""
    driver: str | None = None  # sriovkit extension: bind the VF to this driver for the attachment
    pf: str | None = None  # seeds: the PF to pick a free VF from when no deviceID is given
    pod_ifname: str | None = None  # seeds' if0name: the pod-side name instead of CNI_IFNAME
    l2enable: bool = False  # seeds: no IPAM, the interface is only brought up
    kernel_driver: str | None = None  # seeds' dpdk.kernel_driver: the driver the VF is expected back on
    cni_dir: str | None = None  # seeds: <cniDir>/<netns name>/<ifname>.json; None: the state dir (their default)
    raw: Mapping[str, Any] = field(default_factory=dict)  # as decoded: known fields under upstream's names
    prev_result: Mapping[str, Any] | None = None
    warnings: tuple[str, ...] = ()  # what upstream ignores silently: unknown fields, its own bookkeeping

    @property
    def ipam_type(self) -> str:
        return str(self.ipam.get("type") or "")


def decode(stdin: bytes | str) -> gojson.Pairs:
    """The JSON object on stdin as parsed (members in order, duplicates kept), or the spec's
    decode error (code 6) for text that is not a JSON object Go would read."""
    return _parse(stdin)


def _parse(stdin: bytes | str) -> gojson.Pairs:
    try:
        tree = gojson.parse(stdin).value
    except gojson.JsonSyntaxError as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, "network config on stdin is not valid JSON", str(exc)) from None
    if not isinstance(tree, gojson.Pairs):
        raise CniError(ErrorCode.DECODE_FAILURE, "network config on stdin is not a JSON object",
                       f"got {_json_kind(tree)}")
    return tree


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "a number"


def read_version(stdin: bytes) -> str | None:
    """`cniVersion` as upstream's version decoder reads it, or None when it cannot be read."""
    return _lenient_string(stdin, _VERSION_ONLY, "cniVersion")


def read_device_id(stdin: bytes) -> str | None:
    """`deviceID` of a config that may be refused otherwise (for the failure's log line), or None."""
    return _lenient_string(stdin, _DEVICE_ID_ONLY, "deviceID")


def _lenient_string(stdin: bytes, schema: Any, key: str) -> str | None:
    try:
        tree = gojson.parse(stdin).value
    except gojson.JsonSyntaxError:
        return None
    if not isinstance(tree, gojson.Pairs):
        return None
    value, report = gojson.decode(schema, tree)
    found = (value or {}).get(key)
    return found if isinstance(found, str) and found and not report.problems else None


_VERSION_ONLY = gojson.struct(gojson.Field("cniVersion", gojson.String()), unknown="")
_DEVICE_ID_ONLY = gojson.struct(gojson.Field("deviceID", gojson.String()), unknown="")


def canonical(data: Mapping[str, Any] | gojson.Pairs | bytes | str) -> tuple[dict[str, Any], list[str], list[str]]:
    """A netconf as upstream decodes it: (fields under their canonical names with unknown fields
    kept, problems Go refuses, warnings for what it ignores)."""
    tree = _parse(data) if isinstance(data, bytes | str) else gojson.as_tree(data)
    value, report = gojson.decode(NETCONF, tree)
    problems = [f"{p.path} {gojson.show(p.value)} {p.message}" for p in report.problems]
    warnings = [f"{p.path}: {p.message}: {p.consequence} (value: {gojson.show(p.value)})" for p in report.notices]
    return value or {}, problems, warnings


def normalize_pci_address(value: str) -> str | None:
    v = value.lower()
    if _PCI_SHORT.fullmatch(v):
        v = "0000:" + v
    return v if _PCI_FULL.fullmatch(v) else None


def parse_netconf(data: Mapping[str, Any] | gojson.Pairs | bytes | str, *, cni_args: Mapping[str, str] | None = None,
                  need_device: bool = True) -> NetConf:
    """Validate every field; raise one CniError listing every problem."""
    data, problems, warnings = canonical(data)
    p = _Parser(data, problems)
    rc = data.get("runtimeConfig") or {}
    version = p.string("cniVersion", required=True)
    name = p.string("name", required=True)
    pf = _pf(data, problems)
    device_id = _device_id(data, rc, problems, need_device and pf is None)
    if device_id is not None and pf is not None:
        warnings.append(f"{_pf_key(data)} {json.dumps(pf)}: deviceID {device_id} given too, which wins; ignored")
        pf = None
    dpdk = _dpdk(data, problems, warnings)
    vlan, qos, proto = _vlan(p, problems)
    rates = (p.integer("min_tx_rate", 0, MAX_RATE), p.integer("max_tx_rate", 0, MAX_RATE))
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
        log_format=_log_format(data, warnings),
        device_info_file=_device_info_file(rc, problems),
        driver=_driver(p, problems, dpdk.get("dpdk_driver")),
        pf=pf,
        pod_ifname=_pod_ifname(data, problems),
        l2enable=bool(data.get("l2enable")),
        kernel_driver=dpdk.get("kernel_driver"),
        cni_dir=_cni_dir(data, problems),
        raw=data,
        prev_result=data.get("prevResult") if isinstance(data.get("prevResult"), dict) else None,
        warnings=tuple(warnings),
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
                                 ("runtimeConfig.deviceID", rc.get("deviceID"))) if v not in (None, "")]
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
        if mac == _BROADCAST or int(mac[:2], 16) & 1:
            problems.append(f"{key} {value} is a multicast or broadcast address; a VF needs a unicast one")
            return None
        if mac == ZERO_MAC:
            problems.append(f"{key} {value} is the zero address; a VF needs a unicast one")
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


def _log_format(data: Mapping[str, Any], warnings: list[str]) -> str:
    """`logFormat` is sriovkit's own: upstream ignores the field, so a value we cannot use is a
    warning and text lines, never a refused config."""
    value = data.get("logFormat")
    if value is None or value in LOG_FORMATS:
        return str(value or "text")
    warnings.append(f"logFormat {gojson.show(value)} is not one of {', '.join(LOG_FORMATS)}; text lines written")
    return "text"


def _log_level(p: _Parser) -> str:
    level = p.choice("logLevel", {lvl: lvl for lvl in LOG_LEVELS})
    return str(level) if level else "info"


def _device_info_file(rc: Mapping[str, Any], problems: list[str]) -> str:
    value = rc.get("CNIDeviceInfoFile")
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not value.startswith("/") or "/../" in f"{value}/":
        problems.append(f"runtimeConfig.CNIDeviceInfoFile {json.dumps(value)} must be an absolute path")
        return ""
    return value


def _driver(p: _Parser, problems: list[str], dpdk_driver: str | None) -> str | None:
    value = p.string("driver")
    if value is not None and not _DRIVER.fullmatch(value):
        problems.append(f"driver {json.dumps(value)} is not a driver name")
        return None
    if value is not None and dpdk_driver is not None and value != dpdk_driver:
        problems.append(f"driver {json.dumps(value)} and dpdk.dpdk_driver {json.dumps(dpdk_driver)} disagree")
        return None
    return value or dpdk_driver


def valid_ifname(value: Any) -> bool:
    return isinstance(value, str) and spec.valid_ifname(value)


def _pf_key(data: Mapping[str, Any]) -> str:
    return "if0" if data.get("if0") else "master"


def _pf(data: Mapping[str, Any], problems: list[str]) -> str | None:
    """The seeds' PF, `if0` before `master` (its later spelling): an interface name in the host."""
    given = {k: v for k in ("if0", "Master") if (v := data.get(k)) not in (None, "")}
    if len(set(given.values())) > 1:
        problems.append(f"if0 {json.dumps(given['if0'])} and master {json.dumps(given['Master'])} name different PFs")
        return None
    value = next(iter(given.values()), None)
    if value is not None and not valid_ifname(value):
        problems.append(f"{_pf_key(data)} {json.dumps(value)} is not an interface name")
        return None
    return value


def _pod_ifname(data: Mapping[str, Any], problems: list[str]) -> str | None:
    value = data.get("if0name")
    if value in (None, ""):
        return None
    if not valid_ifname(value):
        problems.append(f"if0name {json.dumps(value)} must be 1-15 letters, digits, '_', '.', '-', '@'")
        return None
    return str(value)


def _dpdk(data: Mapping[str, Any], problems: list[str], warnings: list[str]) -> dict[str, str]:
    block = data.get("dpdk") or {}
    out: dict[str, str] = {}
    for key in ("kernel_driver", "dpdk_driver"):
        value = block.get(key)
        if value in (None, ""):
            continue
        if not _DRIVER.fullmatch(value):
            problems.append(f"dpdk.{key} {json.dumps(value)} is not a driver name")
        else:
            out[key] = value
    if block.get("dpdk_tool"):
        warnings.append(f"dpdk.dpdk_tool {json.dumps(block['dpdk_tool'])}: drivers are bound through sysfs, "
                        "no tool is run; ignored")
    return out


def _cni_dir(data: Mapping[str, Any], problems: list[str]) -> str | None:
    value: str | None = data.get("cniDir")
    if value in (None, ""):
        return None
    if not value.startswith("/") or ".." in value.split("/") or "\0" in value:
        problems.append(f"cniDir {json.dumps(value)} must be an absolute path without '..'")
        return None
    return os.path.normpath(value)


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS ("K=V;K2=V2") as a dict; malformed pairs are the caller's invalid env."""
    out: dict[str, str] = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(ErrorCode.INVALID_ENV, "CNI_ARGS is malformed", f"pair {pair!r} has no KEY=VALUE form")
        out[key.strip()] = value.strip()
    return out
