"""DEL: give the VF back exactly as it was. Idempotent.

No record: nothing was attached (or a DEL already finished): success. With a
record, under the VF's lock: release the IPAM allocation, restore the PF-side
settings ADD changed (before the netdev: some drivers refuse a netdev reset
while trust is off), bring the interface back to the host under its original
name, restore its MAC, MTU and up state, rebind the original driver, remove the
device info file, and only then the record. A failed step keeps the record, so
the runtime's next DEL retries; every step is safe to repeat.

When the pod's namespace is gone, the kernel returns a physical VF to the host
namespace, under the pod-side name (or ``devN`` if that was taken): it is found
by its PCI address and renamed back. That return is asynchronous (namespace
teardown runs after the last reference goes), so a DEL that comes right after
the namespace's deletion waits for the VF; if it is still not back, DEL fails
with "try again" and keeps the record rather than forget a VF that will
reappear renamed and reconfigured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from sriovkit.cni import vfconfig
from sriovkit.cni.attach import ipam_call, original_vf_settings
from sriovkit.cni.cnidir import withdraw_record
from sriovkit.cni.deviceinfo import remove_device_info
from sriovkit.cni.ipam import ipam_del
from sriovkit.cni.netdevmac import set_netdev_mac
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.cni.state import AttachmentRecord, ForeignRecord
from sriovkit.cni.steps import Call, run_step
from sriovkit.host.discover import DeviceNotFoundError, discover_device
from sriovkit.host.model import USERSPACE_DRIVERS
from sriovkit.netlink.model import ZERO_MAC

T = TypeVar("T")
VF_RETURN_WAIT_S = 10.0  # how long a VF may take to come back from a namespace being torn down
_RETURN_POLL_S = 0.02


def detach(call: Call) -> None:
    """Under the attachment's lock: an ADD of this attachment still running finishes first."""
    env, store = call.env, call.ctx.store
    with store.attachment_lock(env.container_id, env.ifname, call.ctx.lock_timeout_s):
        try:
            record = store.load(env.container_id, env.ifname, pending=True)
        except ForeignRecord as exc:  # another attachment's file (colliding key): never release its VF
            call.log.warning("nothing to detach", reason=f"{exc.msg}: {exc.details}")
            return
        if record is None:
            call.log.info("nothing to detach", netns=env.netns)
            return
        release(call, record)


def release(call: Call, record: AttachmentRecord, *, only_if_unchanged: bool = False) -> None:
    """Undo one attachment from its record (DEL, and GC for attachments the runtime forgot).

    `only_if_unchanged` (GC): leave it if the record changed while we waited for the lock, e.g.
    an ADD that was in progress when GC listed its journal has since completed."""
    store = call.ctx.store
    call.log.bind(pci=record.pci_address)
    with store.lock(record.pci_address, call.ctx.lock_timeout_s):
        call.faults.reached("lock taken")
        try:
            current = store.load(record.container_id, record.ifname, pending=True)
        except ForeignRecord:
            current = None  # released, and the name since taken by a colliding attachment
        if current is None:
            call.log.info("already detached")
            return
        if only_if_unchanged and current != record:
            call.log.info("left alone", reason="the attachment changed while GC waited for it")
            return
        _release_ipam(call, current)
        _restore_vf_settings(call, current)
        if current.mode != "userspace":
            _return_netdev(call, current)
        _restore_driver(call, current)
        _do(call, "remove device info", lambda: remove_device_info(call.ctx.caller_path(current.device_info_file)),
            point="remove device info")
        _do(call, "remove the cniDir record", lambda: withdraw_record(current), point="remove cni dir")
        store.delete(current.container_id, current.ifname)
        call.faults.reached("state removed")
    call.log.info("detached", mode=current.mode, interrupted_add=not current.complete)


def _do(call: Call, step: str, action: Callable[[], T], *, point: str | None = None) -> T:
    """One DEL step; `point`: its fault-point label (sriovkit.cni.faults), for steps that change something."""
    value = run_step(call.log, "DEL", step, action)
    if point is not None:
        call.faults.reached(point)
    return value


def _release_ipam(call: Call, record: AttachmentRecord) -> None:
    """With the config ADD used: its allocation is keyed by what ADD passed."""
    config = json.loads(record.config) if record.config else {}
    if not isinstance(config.get("ipam"), dict) or not config["ipam"].get("type") or config.get("l2enable") is True:
        return
    ipam = ipam_call(call, config, container_id=record.container_id, ifname=record.ifname, netns=record.netns)
    _do(call, f"IPAM {ipam.plugin} DEL", lambda: ipam_del(ipam), point="ipam del")


def _restore_vf_settings(call: Call, record: AttachmentRecord) -> None:
    original = original_vf_settings(record)
    if original is None or record.pf_netdev is None or record.vf_index is None:
        return
    nl, pf, index = call.ctx.netlink, record.pf_netdev, record.vf_index
    keys = record.changed_vf
    if not record.complete:  # an interrupted ADD: restore only what it got to change
        actual = vfconfig.settings_to_dict(_do(call, "read VF settings", lambda: nl.vf_settings(pf, index)))
        changed = {k for k, v in vfconfig.settings_to_dict(original).items() if actual.get(k) != v}
        keys = [k for k in keys if changed & set(vfconfig.FIELDS_OF[k])]
    for key in reversed(keys):
        _do(call, f"restore {vfconfig.describe_restore(key, original)}",
            partial(vfconfig.restore_setting, nl, pf, index, key, original), point=f"restore vf {key}")


def _restore_driver(call: Call, record: AttachmentRecord) -> None:
    if record.bound_driver is None:
        return
    original = record.original.driver
    if discover_device(call.ctx.sysfs, record.pci_address).driver == original:
        return  # never rebound (interrupted ADD) or already restored by an earlier DEL
    binder = call.ctx.driver_binder()
    address = record.pci_address
    # The kernel's own choice first: it clears the driver_override ADD wrote, so the VF ends as it
    # was in the usual case (ADD moved it from its default driver). Only when that is not the
    # driver it had is it pinned to it by name.
    _do(call, "rebind the kernel's default driver", lambda: binder.bind_driver(address, None),
        point="rebind driver")
    if original is not None and discover_device(call.ctx.sysfs, address).driver != original:
        _do(call, f"rebind driver {original}", lambda: binder.bind_driver(address, original))


def _return_netdev(call: Call, record: AttachmentRecord) -> None:
    nl, ctx = call.ctx.netlink, call.ctx
    host_name = record.original.host_ifname or fallback_name(record.pci_address)
    in_pod = None
    pod_alive = bool(record.netns) and ctx.netns_exists(record.netns)
    if pod_alive:
        in_pod = _do(call, "look in the pod", lambda: nl.find_link(record.ifname, record.netns))
    if in_pod is not None:
        name = _free_host_name(call, host_name, record)
        _do(call, f"move {record.ifname} back as {name}",
            lambda: nl.move_link(record.ifname, src_netns=record.netns, dst_netns=None, new_name=name),
            point="move back")
    else:
        current = _do(call, "find by PCI address", lambda: nl.device_netdev(record.pci_address))
        if current is None and not pod_alive:
            current = _await_return(call, record)
        if current is None:
            call.log.warning("interface not found", reason="in neither the pod netns nor the host", netns=record.netns)
            return
        name = current
        if current != host_name:
            name = _free_host_name(call, host_name, record)
            _do(call, f"rename {current} back to {name}", lambda: nl.rename_link(current, name), point="rename back")
    _restore_link(call, record, name)


def _await_return(call: Call, record: AttachmentRecord) -> str | None:
    """The VF's host name once it is back from a namespace being torn down; None if the function
    has no netdev to come back (gone, or on a userspace driver). Raises "try again" (the record
    stays for the runtime's next DEL) when a netdev is due but has not arrived."""
    nl = call.ctx.netlink
    deadline = time.monotonic() + VF_RETURN_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(_RETURN_POLL_S)
        name = _do(call, "find by PCI address", lambda: nl.device_netdev(record.pci_address))
        if name is not None:
            call.log.info("back from the pod's namespace", host_ifname=name)
            return name
    try:
        driver = discover_device(call.ctx.sysfs, record.pci_address).driver
    except DeviceNotFoundError:
        return None
    if driver is None or driver in USERSPACE_DRIVERS:
        return None
    raise CniError(ErrorCode.TRY_AGAIN, f"{record.pci_address} has not come back from {record.netns} yet",
                   f"waited {VF_RETURN_WAIT_S:g}s for its interface; DEL again to finish")


def _restore_link(call: Call, record: AttachmentRecord, name: str) -> None:
    nl, o = call.ctx.netlink, record.original
    link = _do(call, f"read {name}", lambda: nl.find_link(name))
    if link is None:
        return
    if o.mac and o.mac != ZERO_MAC and link.mac.lower() != o.mac.lower():
        _do(call, f"restore mac {o.mac}", lambda: set_netdev_mac(nl, name, o.mac or ""), point="restore mac")
    if o.mtu and link.mtu != o.mtu:
        _do(call, f"restore mtu {o.mtu}", lambda: nl.set_link_mtu(name, o.mtu or 0), point="restore mtu")
    if o.up is not None and link.up != o.up:
        _do(call, f"set {'up' if o.up else 'down'}", lambda: nl.set_link_up(name, bool(o.up)), point="restore up")


def _free_host_name(call: Call, wanted: str, record: AttachmentRecord) -> str:
    """`wanted` unless another interface took it meanwhile; then a name unique to the VF."""
    taken = call.ctx.netlink.find_link(wanted)
    if taken is None or call.ctx.netlink.device_netdev(record.pci_address) == wanted:
        return wanted
    name = fallback_name(record.pci_address)
    call.log.warning("host name taken", wanted=wanted, using=name)
    return name


def fallback_name(pci_address: str) -> str:
    """A host name no other device can have: derived from the PCI address (<= 15 chars)."""
    return "sv" + pci_address.replace(":", "").replace(".", "")[-11:]
