"""`k8s.v1.cni.cncf.io/network-status`: what is attached, written as Multus writes it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

from sriovkit import gojson
from sriovkit.multus import NETWORK_STATUS_ANNOTATION

# One entry as we write it (Multus' fields; "default" is only ever the default network's, not ours).
# Entries read back from a pod are other writers' JSON: Mapping[str, Any].
NetworkStatusEntry = TypedDict("NetworkStatusEntry", {
    "name": str,  # the network, namespace/name
    "interface": str,
    "ips": NotRequired[list[str]],
    "mac": NotRequired[str],
    "dns": NotRequired[dict[str, Any]],  # the result's DNS block as the plugin gave it (always written)
    "device-info": NotRequired[dict[str, Any]],  # the Device Information document (sriovkit.devinfo)
})


def status_entry(network: str, interface: str, result: Mapping[str, Any], *,
                 device_info: Mapping[str, Any] | None = None) -> NetworkStatusEntry:
    """One network-status entry from a CNI ADD result for `interface` in the sandbox."""
    entry: NetworkStatusEntry = {"name": network, "interface": interface}
    ips, mac = _addresses(result, interface)
    if ips:
        entry["ips"] = ips
    if mac:
        entry["mac"] = mac
    dns = result.get("dns")
    entry["dns"] = dict(dns) if isinstance(dns, Mapping) else {}
    if device_info:
        entry["device-info"] = dict(device_info)
    return entry


def _addresses(result: Mapping[str, Any], interface: str) -> tuple[list[str], str | None]:
    interfaces = [i for i in result.get("interfaces") or [] if isinstance(i, Mapping)]
    ours = [n for n, i in enumerate(interfaces) if i.get("name") == interface and i.get("sandbox")]
    if not ours:  # some plugins report the sandbox interface without its netns path
        ours = [n for n, i in enumerate(interfaces) if i.get("name") == interface]
    mac = str(interfaces[ours[0]]["mac"]) if ours and interfaces[ours[0]].get("mac") else None
    ips = []
    for ip in result.get("ips") or []:
        if not isinstance(ip, Mapping) or "address" not in ip:
            continue
        index = ip.get("interface")
        if index is None or index in ours:
            ips.append(str(ip["address"]).split("/")[0])
    for legacy in ("ip4", "ip6"):  # CNI 0.2.0 results
        block = result.get(legacy)
        if isinstance(block, Mapping) and "ip" in block:
            ips.append(str(block["ip"]).split("/")[0])
    return ips, mac


def read_network_status(annotations: Mapping[str, str] | None) -> list[dict[str, Any]]:
    """The pod's network-status entries; an unreadable annotation reads as none (Multus rewrites it)."""
    raw = (annotations or {}).get(NETWORK_STATUS_ANNOTATION)
    if not raw:
        return []
    try:
        entries = gojson.plain(gojson.parse(raw).value)
    except gojson.JsonError:  # not JSON Go reads, or a number no float64 holds
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def pci_devices_in_status(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The PCI addresses network-status says the pod's interfaces use (Multus' and ours)."""
    out: list[str] = []
    for entry in entries:
        info = entry.get("device-info")
        pci = info.get("pci") if isinstance(info, Mapping) else None
        address = pci.get("pci-address") if isinstance(pci, Mapping) else None
        if isinstance(address, str) and address:
            out.append(address)
    return out


def secondary_attachments(entries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """interface -> network of the secondary attachments in network-status (the default network skipped)."""
    out: dict[str, str] = {}
    for entry in entries:
        if entry.get("default") or not entry.get("interface") or not entry.get("name"):
            continue
        out[str(entry["interface"])] = str(entry["name"])
    return out


def reconciled_status(entries: Sequence[Mapping[str, Any]], *, ours: Sequence[Mapping[str, Any]],
                      others: set[str]) -> list[dict[str, Any]]:
    """What network-status should say: the default network's entries, the secondary entries of
    `others` (interfaces someone else attached and that are still there), then `ours`."""
    mine = {str(o["interface"]) for o in ours}
    kept = [dict(e) for e in entries
            if e.get("default") or (str(e.get("interface")) in others and str(e.get("interface")) not in mine)]
    return kept + [dict(o) for o in ours]


def status_annotation(entries: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(entries), indent=1)
