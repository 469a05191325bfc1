"""Giving one attachment back from its record: the steps DEL and GC share.

Under the VF's lock: find the VF, release the IPAM allocation (a plugin that never looks at the
pod's interface beside the steps that follow, joined before the record goes), restore the PF-side
settings ADD changed (before the netdev: some drivers refuse a netdev reset while trust is off), bring the
interface back to the host under its original name, restore its MAC, MTU and up state, rebind the
original driver, remove the device info file, and only then the record. A failed step keeps the
record, so the next DEL (or GC) retries; every step is safe to repeat. How the VF is found and
waited for is described in `sriovkit.cni.detach`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from sriovkit.cni import vfconfig
from sriovkit.cni.cnidir import withdraw_record
from sriovkit.cni.deviceinfo import remove_device_info
from sriovkit.cni.ipam import ipam_del, runs_alongside
from sriovkit.cni.locate import find_vf
from sriovkit.cni.netdevmac import set_netdev_mac
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.cni.state import AttachmentRecord, ForeignRecord
from sriovkit.cni.steps import Call, Started, ipam_call, run_step
from sriovkit.host.discover import DeviceNotFoundError, discover_device
from sriovkit.host.model import USERSPACE_DRIVERS
from sriovkit.netlink.model import ZERO_MAC, LinkInfo, VfSettings

T = TypeVar("T")
VF_RETURN_WAIT_S = 10.0  # how long a VF may take to come back from a namespace being torn down
_RETURN_POLL_S = 0.02


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
        found = _locate_first(call, current) if current.mode != "userspace" else None
        releasing = _release_ipam(call, current)
        try:
            _restore_vf_settings(call, current)
            if current.mode != "userspace":
                _return_netdev(call, current, found)
            _restore_driver(call, current)
        except BaseException:
            if releasing is not None:
                releasing.succeeded()  # joined, so nothing outlives the lock; the first error is answered
            raise
        if releasing is not None:
            releasing.wait()
            call.faults.reached("ipam del")
        _do(call, "remove device info", lambda: _remove_device_info(call, current), point="remove device info")
        _do(call, "remove the cniDir record", lambda: withdraw_record(current), point="remove cni dir")
        store.delete(current.container_id, current.ifname)
        call.faults.reached("state removed")
    call.log.info("detached", mode=current.mode, interrupted_add=not current.complete)


def _remove_device_info(call: Call, record: AttachmentRecord) -> None:
    """Only the file ADD created: the one whose identity the record holds, or, for an ADD that
    stopped half-way (a journal), a file at a path that was free when that ADD checked it."""
    root = record.device_info_root or call.ctx.devinfo_dir
    unrecorded = not record.complete and record.device_info_fresh
    remove_device_info(root, record.device_info_file, record.device_info_created, unrecorded=unrecorded,
                       reached=call.ctx.caller_path(root))


def _do(call: Call, step: str, action: Callable[[], T], *, point: str | None = None) -> T:
    """One DEL step; `point`: its fault-point label (sriovkit.cni.faults), for steps that change something."""
    value = run_step(call.log, "DEL", step, action)
    if point is not None:
        call.faults.reached(point)
    return value


def _release_ipam(call: Call, record: AttachmentRecord) -> Started[None] | None:
    """With the config ADD used: its allocation is keyed by what ADD passed. A plugin that never
    looks at the pod's interface (ipam.INTERFACE_BLIND) is released on a thread of its own while
    the VF is given back (returned: the caller waits for it); any other first, inline."""
    config = json.loads(record.config) if record.config else {}
    if not isinstance(config.get("ipam"), dict) or not config["ipam"].get("type") or config.get("l2enable") is True:
        return None
    ipam = ipam_call(call, config, container_id=record.container_id, ifname=record.ifname, netns=record.netns)
    step = f"IPAM {ipam.plugin} DEL"
    if runs_alongside(ipam):
        return Started(call.log, "DEL", step, lambda: ipam_del(ipam))
    _do(call, step, lambda: ipam_del(ipam), point="ipam del")
    return None


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


def _locate_first(call: Call, record: AttachmentRecord) -> tuple[bool, LinkInfo] | None:
    """Before anything is undone, where the VF is: (in the pod?, its link), or None when the
    function has no netdev to bring back. A VF found in neither the pod nor the host (a pod hid
    it in a namespace of its own; a namespace still being torn down) keeps its whole attachment,
    IPAM lease and VLAN included, and DEL answers "try again"."""
    pod_alive = bool(record.netns) and call.ctx.netns_exists(record.netns)
    if pod_alive:
        in_pod = _do(call, "find the VF in the pod", lambda: _find(call, record, record.netns))
        if in_pod is not None:
            return True, in_pod
    home = _do(call, "find the VF in the host", lambda: _find(call, record, None))
    if home is None and not _netdev_due(call, record):
        call.log.warning("nothing to bring back", reason="the function is gone or has no netdev driver")
        return None
    if home is None and not pod_alive:
        home = _await_return(call, record)
    if home is None:
        raise _not_found(record, pod_alive)
    return False, home


def _return_netdev(call: Call, record: AttachmentRecord, found: tuple[bool, LinkInfo] | None) -> None:
    """The VF back in the host under its name, found by what the kernel says it is (never by the
    name it had in the pod: the pod may have renamed it and given that name to a link of its own,
    which must never reach the host), and verified back before DEL may succeed. It is moved by
    ifindex: a rename since `_locate_first` cannot swap it for another link."""
    if found is None:
        return
    in_pod, link = found
    host_name = record.original.host_ifname or fallback_name(record.pci_address)
    if in_pod:
        name = _free_host_name(call, host_name, record)
        if link.name != record.ifname:
            call.log.warning("VF renamed in the pod", ifname=record.ifname, now=link.name)
        _do(call, f"move {link.name} back as {name}",
            lambda: call.ctx.netlink.move_link(link.name, src_netns=record.netns, dst_netns=None,
                                               new_name=name, index=link.index), point="move back")
    else:
        name = link.name
        if link.name != host_name:
            name = _free_host_name(call, host_name, record)
            _do(call, f"rename {link.name} back to {name}",
                lambda: call.ctx.netlink.rename_link(link.name, name), point="rename back")
    _restore_link(call, record, name)
    _verify_returned(call, record, name)


def _find(call: Call, record: AttachmentRecord, netns: str | None) -> LinkInfo | None:
    index = record.pod_ifindex if netns is not None else record.original.ifindex
    return find_vf(call.ctx.netlink, record.pci_address, netns, ifindex=index, perm_mac=record.original.perm_mac)


def _netdev_due(call: Call, record: AttachmentRecord) -> bool:
    """Whether the function should have a netdev somewhere: it exists and its driver makes one."""
    try:
        driver = discover_device(call.ctx.sysfs, record.pci_address).driver
    except DeviceNotFoundError:
        return False
    return driver is not None and driver not in USERSPACE_DRIVERS


def _not_found(record: AttachmentRecord, pod_alive: bool) -> CniError:
    where = f"{record.netns} (still there)" if pod_alive else f"the host since {record.netns} went"
    return CniError(ErrorCode.TRY_AGAIN, f"VF {record.pci_address} is in neither the pod nor the host namespace",
                    f"not found in {where}; the record is kept, DEL again once it is back")


def _verify_returned(call: Call, record: AttachmentRecord, name: str) -> None:
    """DEL succeeds only for a VF the kernel shows back in the host as it was."""
    back = _do(call, "verify the VF is back", lambda: _find(call, record, None))
    if back is None or back.name != name:
        raise CniError(ErrorCode.TRY_AGAIN, f"VF {record.pci_address} is not back in the host as {name}",
                       f"the kernel shows {back.name if back else 'no interface'}; the record is kept, DEL again")
    o, drift = record.original, []
    if o.mac and o.mac != ZERO_MAC and back.mac.lower() != o.mac.lower():
        drift.append(f"mac {back.mac}")
    if o.mtu and back.mtu != o.mtu:
        drift.append(f"mtu {back.mtu}")
    if drift:
        raise CniError(ErrorCode.TRY_AGAIN, f"VF {record.pci_address} is back as {name} but not restored",
                       f"{', '.join(drift)} (was mac {o.mac} mtu {o.mtu}); the record is kept, DEL again")


def _await_return(call: Call, record: AttachmentRecord) -> LinkInfo | None:
    """The VF once it is back from a namespace being torn down, or None when it has not arrived
    within VF_RETURN_WAIT_S (the caller answers "try again" and keeps the record)."""
    deadline = time.monotonic() + VF_RETURN_WAIT_S
    while time.monotonic() < deadline:
        call.ctx.netlink.await_link_changes(_RETURN_POLL_S)
        home = _do(call, "find the VF in the host", lambda: _find(call, record, None))
        if home is not None:
            call.log.info("back from the pod's namespace", host_ifname=home.name)
            return home
    return None


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


def original_vf_settings(record: AttachmentRecord) -> VfSettings | None:
    return vfconfig.settings_from_dict(record.original.vf) if record.original.vf is not None else None
