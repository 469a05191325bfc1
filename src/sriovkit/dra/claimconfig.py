"""A ResourceClaim's allocation as this driver reads it: pure, no I/O.

The kubelet names only the claim; its allocation (which devices, which opaque configs) is in the
claim's status on the API server. The opaque parameters are dra-driver-sriov's ``VfConfig``
(apiVersion ``<group>/v1alpha1``, kind ``VfConfig``). Like upstream's strict decoder, an unknown
or misspelt field is refused; unlike upstream, every field of a later config overrides an earlier
one (upstream drops ``addVhostMount`` and ``netAttachDefNamespace`` in its merge) and a config
without ``requests`` applies to every request (what the API defines; upstream applies it to none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sriovkit.errors import SriovkitError

CONFIG_VERSION = "v1alpha1"
CONFIG_KIND = "VfConfig"
DEFAULT_DRIVER = "default"  # upstream: bind the kernel's own driver
_FIELDS = {"apiVersion", "kind", "driver", "addVhostMount", "ifName", "netAttachDefName", "netAttachDefNamespace",
           "vf"}
_VF_FIELDS = {"vlan": int, "qos": int, "vlanProto": str, "spoofChk": bool, "trust": bool, "minTxRate": int,
              "maxTxRate": int, "linkState": str}
_DRIVER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IFNAME = re.compile(r"^[^/\s:]{1,15}$")


class ClaimError(SriovkitError, ValueError):
    """The claim cannot be prepared as it is: one line naming the claim, field and value."""


@dataclass(frozen=True, slots=True)
class VfConfig:
    driver: str = ""  # "": leave the VF's driver; "default": the kernel's; else that driver
    add_vhost_mount: bool = False
    if_name: str = ""
    net_attach_def_name: str = ""
    net_attach_def_namespace: str = ""
    vf: Mapping[str, Any] = field(default_factory=dict)  # VF link settings, as given

    def overridden_by(self, other: VfConfig, given: set[str]) -> VfConfig:
        changes: dict[str, Any] = {}
        for key, attr in (("driver", "driver"), ("addVhostMount", "add_vhost_mount"), ("ifName", "if_name"),
                          ("netAttachDefName", "net_attach_def_name"),
                          ("netAttachDefNamespace", "net_attach_def_namespace")):
            if key in given:
                changes[attr] = getattr(other, attr)
        if "vf" in given:
            changes["vf"] = {**self.vf, **other.vf}
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {"driver": self.driver, "addVhostMount": self.add_vhost_mount, "ifName": self.if_name,
                "netAttachDefName": self.net_attach_def_name, "netAttachDefNamespace": self.net_attach_def_namespace,
                "vf": dict(self.vf)}


@dataclass(frozen=True, slots=True)
class AllocatedDevice:
    """One allocation result for this driver, with the config that applies to it."""

    request: str
    pool: str
    device: str
    config: VfConfig
    admin_access: bool = False


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_vf_config(params: Any, *, group: str, where: str) -> tuple[VfConfig, set[str]]:
    """A VfConfig and the fields it set; `ClaimError` on anything upstream's decoder refuses."""
    if not isinstance(params, dict):
        raise ClaimError(f"{where}: must be a VfConfig object (value: {_show(params)})")
    want_version = f"{group}/{CONFIG_VERSION}"
    if params.get("apiVersion") != want_version or params.get("kind") != CONFIG_KIND:
        raise ClaimError(f"{where}: apiVersion/kind must be {want_version}/{CONFIG_KIND} "
                         f"(value: {_show([params.get('apiVersion'), params.get('kind')])})")
    for key in params:
        if key not in _FIELDS:
            raise ClaimError(f"{where}.{key}: unknown field (value: {_show(params[key])})")
    driver = _typed(params, "driver", str, "", where)
    if driver and not _DRIVER.match(driver):
        raise ClaimError(f"{where}.driver: must be a kernel driver name such as vfio-pci (value: {_show(driver)})")
    if_name = _typed(params, "ifName", str, "", where)
    if if_name and not _IFNAME.match(if_name):
        raise ClaimError(f"{where}.ifName: must be an interface name of at most 15 characters "
                         f"(value: {_show(if_name)})")
    config = VfConfig(
        driver=driver,
        add_vhost_mount=_typed(params, "addVhostMount", bool, False, where),
        if_name=if_name,
        net_attach_def_name=_typed(params, "netAttachDefName", str, "", where),
        net_attach_def_namespace=_typed(params, "netAttachDefNamespace", str, "", where),
        vf=_vf_settings(params.get("vf"), f"{where}.vf"),
    )
    # upstream's merge treats empty strings and false as "not set"
    given = {k for k in _FIELDS - {"apiVersion", "kind"} if params.get(k) not in (None, "", False, {})}
    return config, given


def _typed(params: Mapping[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ClaimError(f"{where}.{key}: must be a {kind.__name__} (value: {_show(value)})")
    return value


def _vf_settings(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ClaimError(f"{where}: must be an object (value: {_show(raw)})")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _VF_FIELDS.get(key)
        if kind is None:
            raise ClaimError(f"{where}.{key}: unknown field (value: {_show(value)})")
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ClaimError(f"{where}.{key}: must be a {kind.__name__} (value: {_show(value)})")
        out[key] = value
    return out


def _applies(config_requests: list[str], request: str) -> bool:
    # a config naming "req" applies to its subrequests ("req/sub") too
    if not config_requests:
        return True
    parent = request.split("/", 1)[0]
    return request in config_requests or parent in config_requests


def allocated_devices(claim: Mapping[str, Any], *, driver: str, group: str) -> list[AllocatedDevice]:
    """This driver's results of an allocated claim, each with its merged config (class
    configs first, then the claim's; later wins). `ClaimError` when it cannot be prepared."""
    ref = _claim_ref(claim)
    allocation = (claim.get("status") or {}).get("allocation")
    if not isinstance(allocation, dict):
        raise ClaimError(f"claim {ref}: status.allocation: not allocated")
    devices = allocation.get("devices") or {}
    results = [r for r in devices.get("results") or [] if isinstance(r, dict) and r.get("driver") == driver]
    if not results:
        raise ClaimError(f"claim {ref}: status.allocation.devices.results: no device of driver {driver}")
    configs = _ordered_configs(devices.get("config") or [], ref)
    out = []
    for i, result in enumerate(results):
        request = str(result.get("request") or "")
        merged = VfConfig()
        for j, (requests, params) in enumerate(configs):
            if params.get("driver") != driver or not _applies(requests, request):
                continue
            config, given = parse_vf_config(params.get("parameters"), group=group,
                                            where=f"claim {ref}: config[{j}].opaque.parameters")
            merged = merged.overridden_by(config, given)
        pool, name = result.get("pool"), result.get("device")
        if not isinstance(pool, str) or not isinstance(name, str) or not pool or not name:
            raise ClaimError(f"claim {ref}: results[{i}]: pool and device required (value: {_show(result)})")
        out.append(AllocatedDevice(request, pool, name, merged, bool(result.get("adminAccess"))))
    return out


def _ordered_configs(raw: list[Any], ref: str) -> list[tuple[list[str], dict[str, Any]]]:
    by_source: dict[str, list[tuple[list[str], dict[str, Any]]]] = {"FromClass": [], "FromClaim": []}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        source = entry.get("source")
        if source not in by_source:
            raise ClaimError(f"claim {ref}: status.allocation.devices.config[{i}].source: invalid "
                             f"(value: {_show(source)})")
        opaque = entry.get("opaque")
        if not isinstance(opaque, dict):
            continue  # another kind of config: nothing this driver reads
        by_source[source].append((list(entry.get("requests") or []), opaque))
    return by_source["FromClass"] + by_source["FromClaim"]


def _claim_ref(claim: Mapping[str, Any]) -> str:
    meta = claim.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def reserved_pod_uid(claim: Mapping[str, Any]) -> str:
    for consumer in (claim.get("status") or {}).get("reservedFor") or []:
        if isinstance(consumer, dict) and consumer.get("resource") == "pods" and consumer.get("uid"):
            return str(consumer["uid"])
    return ""
