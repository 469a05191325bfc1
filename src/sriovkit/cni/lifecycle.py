"""CHECK, STATUS and GC: is an attachment still as ADD left it, can ADD work, and
releasing attachments the runtime no longer knows about."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from sriovkit import gojson
from sriovkit.cni import vfconfig
from sriovkit.cni.ipam import ipam_check, ipam_lifecycle
from sriovkit.cni.locate import find_vf
from sriovkit.cni.release import release
from sriovkit.cni.spec import CniError, ErrorCode, parse_result
from sriovkit.cni.state import AttachmentRecord
from sriovkit.cni.steps import Call, ipam_call

VALID_ATTACHMENTS = "cni.dev/valid-attachments"
LEGACY_ATTACHMENTS = "cni.dev/attachments"  # the name the GC section first used; libcni sends both
_MISSING = object()


def check(call: Call) -> None:
    env, conf = call.env, call.conf
    if conf.prev_result is None:
        raise CniError(ErrorCode.INVALID_CONFIG, "CHECK needs prevResult in the network config")
    record = call.ctx.store.load(env.container_id, env.ifname)
    if record is None:
        raise CniError(ErrorCode.CHECK_FAILED, f"no attachment {env.attachment}", "ADD did not run or DEL did")
    call.log.bind(pci=record.pci_address)
    problems: list[str] = []
    if conf.device_id is not None and conf.device_id != record.pci_address:
        problems.append(f"deviceID {conf.device_id} differs from the attached {record.pci_address}")
    if record.mode != "userspace":
        problems += _check_interface(call, record)
    if record.pf_netdev is not None and record.vf_index is not None:
        actual = call.ctx.netlink.vf_settings(record.pf_netdev, record.vf_index)
        problems += vfconfig.mismatches(conf, actual)
    if problems:
        raise CniError(ErrorCode.CHECK_FAILED, f"attachment {env.attachment} has drifted", "; ".join(problems))
    if conf.ipam_type:
        ipam_check(ipam_call(call))
    call.log.info("checked")


def _check_interface(call: Call, record: AttachmentRecord) -> list[str]:
    """The VF is found by its PCI parent device (sriovkit.cni.locate), not by CNI_IFNAME: an
    interface of the pod's own that took the name is reported, never checked in the VF's place."""
    env, nl = call.env, call.ctx.netlink
    link = find_vf(nl, record.pci_address, env.netns, ifindex=record.pod_ifindex, perm_mac=record.original.perm_mac)
    if link is None:
        other = nl.find_link(env.ifname, env.netns)
        impostor = f" ({env.ifname} there is another interface)" if other is not None else ""
        return [f"VF {record.pci_address} is missing from {env.netns}{impostor}"]
    problems = []
    if link.name != env.ifname:
        problems.append(f"VF {record.pci_address} is named {link.name} in the pod, not {env.ifname}")
    if record.pod_mac and link.mac.lower() != record.pod_mac.lower():
        problems.append(f"{link.name} has mac {link.mac}, ADD set {record.pod_mac}")
    if call.conf.mtu is not None and link.mtu != call.conf.mtu:
        problems.append(f"{link.name} has mtu {link.mtu}, config says {call.conf.mtu}")
    have = {ipaddress.ip_interface(a) for a in nl.addresses(link.name, env.netns)}
    prev = parse_result(call.conf.prev_result or {}, "prevResult")
    for ip in prev.ips:
        if ipaddress.ip_interface(ip.address) not in have:
            problems.append(f"{link.name} lacks address {ip.address}")
    return problems


def status(call: Call) -> None:
    """Ready when the state dir is usable and the IPAM plugin (if it speaks 1.1.0) says so."""
    try:
        call.ctx.store.check_usable()
    except CniError as exc:
        raise CniError(ErrorCode.NOT_AVAILABLE, "sriov plugin not available", f"{exc.msg} {exc.details}") from None
    if call.conf.ipam_type:
        ipam_lifecycle(ipam_call(call), "STATUS")


def gc(call: Call) -> list[str]:
    """Release this network's attachments missing from cni.dev/valid-attachments."""
    valid = _valid_attachments(call)
    released = []
    failures: list[CniError] = []
    for record in call.ctx.store.records(pending=True):
        if record.network != call.conf.name or (record.container_id, record.runtime_ifname or record.ifname) in valid:
            continue
        call.log.info("gc release", stale=record.key, pci=record.pci_address)
        try:  # one attachment that cannot be released yet must not keep GC from the others
            with call.ctx.store.attachment_lock(record.container_id, record.ifname, call.ctx.lock_timeout_s):
                release(call, record, only_if_unchanged=True)
        except CniError as exc:
            call.log.error("gc release failed", stale=record.key, code=exc.code, msg=exc.msg)
            failures.append(exc)
            continue
        released.append(record.key)
    if call.conf.ipam_type:
        ipam_lifecycle(ipam_call(call), "GC")
    if failures:
        first = failures[0]
        raise CniError(first.code, f"GC released {len(released)} attachment(s), {len(failures)} failed: {first.msg}",
                       first.details)
    return released


def _valid_attachments(call: Call) -> set[tuple[str, str]]:
    return parse_valid_attachments(call.conf.raw)


def parse_valid_attachments(config: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (containerID, ifname) pairs GC must keep, from the runtime's config.

    The list decides which pods keep their VFs, so a list that is missing or that cannot be read
    entirely is refused (INVALID_CONFIG) before anything is released: guessing would detach the
    VF of every running pod on the network. libcni sends the list under both names the spec has
    used (issue containernetworking/cni#1101); an attachment listed under either is kept. Keys
    match as Go's encoding/json matches them (exact first, then case-insensitively). `null` is
    refused like any other non-list (a Go runtime's nil list): "no attachment is valid" is `[]`."""
    lists = [(key, value) for key in (VALID_ATTACHMENTS, LEGACY_ATTACHMENTS)
             if (value := gojson.lookup(config, key, _MISSING)) is not _MISSING]
    if not lists:
        raise CniError(ErrorCode.INVALID_CONFIG, f"GC needs {VALID_ATTACHMENTS} in the network config",
                       "without the list of attachments still in use, nothing can be told stale; nothing released")
    valid: set[tuple[str, str]] = set()
    for key, raw in lists:
        valid |= _attachments_of(key, raw)
    return valid


def _attachments_of(key: str, raw: Any) -> set[tuple[str, str]]:
    if not isinstance(raw, list):
        raise _malformed(key, f"must be a list of objects, got {_json_type(raw)}", raw)
    out = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise _malformed(f"{key}[{i}]", f"must be an object, got {_json_type(entry)}", entry)
        pair = []
        for field in ("containerID", "ifname"):
            value = gojson.lookup(entry, field, None)
            if not isinstance(value, str) or not value:
                got = "missing" if value is None else f"{_json_type(value)} {_short(value)}"
                raise _malformed(f"{key}[{i}].{field}", f"must be a non-empty string, got {got}", entry)
            pair.append(value)
        out.add((pair[0], pair[1]))
    return out


def _malformed(where: str, problem: str, value: Any) -> CniError:
    return CniError(ErrorCode.INVALID_CONFIG, f"GC: {where} {problem}",
                    f"value {_short(value)}; nothing released")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:200] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)
