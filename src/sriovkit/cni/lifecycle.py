"""CHECK, STATUS and GC: is an attachment still as ADD left it, can ADD work, and
releasing attachments the runtime no longer knows about."""

from __future__ import annotations

import ipaddress
import json

from sriovkit.cni import vfconfig
from sriovkit.cni.attach import ipam_call
from sriovkit.cni.detach import release
from sriovkit.cni.ipam import ipam_check, ipam_lifecycle
from sriovkit.cni.spec import CniError, ErrorCode, parse_result
from sriovkit.cni.state import AttachmentRecord
from sriovkit.cni.steps import Call

VALID_ATTACHMENTS = "cni.dev/valid-attachments"


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
    env, nl = call.env, call.ctx.netlink
    link = nl.find_link(env.ifname, env.netns)
    if link is None:
        return [f"interface {env.ifname} is missing from {env.netns}"]
    problems = []
    if record.pod_mac and link.mac.lower() != record.pod_mac.lower():
        problems.append(f"{env.ifname} has mac {link.mac}, ADD set {record.pod_mac}")
    if call.conf.mtu is not None and link.mtu != call.conf.mtu:
        problems.append(f"{env.ifname} has mtu {link.mtu}, config says {call.conf.mtu}")
    have = {ipaddress.ip_interface(a) for a in nl.addresses(env.ifname, env.netns)}
    prev = parse_result(call.conf.prev_result or {}, "prevResult")
    for ip in prev.ips:
        if ipaddress.ip_interface(ip.address) not in have:
            problems.append(f"{env.ifname} lacks address {ip.address}")
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
    for record in call.ctx.store.records(pending=True):
        if record.network != call.conf.name or (record.container_id, record.ifname) in valid:
            continue
        call.log.info("gc release", stale=record.key, pci=record.pci_address)
        with call.ctx.store.attachment_lock(record.container_id, record.ifname, call.ctx.lock_timeout_s):
            release(call, record, only_if_unchanged=True)
        released.append(record.key)
    if call.conf.ipam_type:
        ipam_lifecycle(ipam_call(call), "GC")
    return released


def _valid_attachments(call: Call) -> set[tuple[str, str]]:
    raw = call.conf.raw.get(VALID_ATTACHMENTS)
    if raw is None:
        return set()
    if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
        raise CniError(ErrorCode.INVALID_CONFIG, f"{VALID_ATTACHMENTS} must be a list of objects",
                       json.dumps(raw)[:200])
    return {(str(a.get("containerID", "")), str(a.get("ifname", ""))) for a in raw}
