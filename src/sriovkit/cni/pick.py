"""The seeds' mode without a device plugin: the netconf names a PF (`if0`/`master`), the plugin
picks a free VF of it.

`candidate_vfs` is the choice itself (pure): the PF's VFs lowest index first, without those an
attachment holds and those the running agent offers in a device-plugin or DRA pool, or one clear
error saying why none is left. `locked_device` is the I/O around it: each candidate is taken under
its per-VF lock (the lock every ADD and DEL of that VF takes), checked again under it (no record
holds it, its interface is in the host), and the first usable one is yielded still locked, with
the device read while checking it (ADD reads sysfs once per device). A PF without VFs is passed
through itself, as a `deviceID` naming it would be.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence

from sriovkit.cni.device import Device, resolve_device
from sriovkit.cni.netconf import normalize_pci_address
from sriovkit.cni.pools import pooled_devices, pools_path
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.cni.state import LockTimeout
from sriovkit.cni.steps import Call
from sriovkit.host.discover import DeviceNotFoundError, discover_device, virtfns


def candidate_vfs(pf: str, vfs: Sequence[tuple[int, str]], held: Mapping[str, str],
                  pooled: Mapping[str, str]) -> list[str]:
    """VF addresses to try, lowest index first. `held`: address -> the attachment holding it;
    `pooled`: address -> the pool offering it."""
    if not vfs:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"PF {pf} has no VFs")
    free = [vf for _, vf in vfs if vf not in held and vf not in pooled]
    if free:
        return free
    pools = sorted({pooled[vf] for _, vf in vfs if vf in pooled and vf not in held})
    if pools:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"PF {pf} has no VF outside the agent's pools",
                       f"its other VFs are offered in pool {', '.join(pools)} (device plugin or DRA) "
                       f"and {len(vfs) - sum(1 for _, vf in vfs if vf in pooled and vf not in held)} are attached; "
                       "take one through that pool (deviceID) or leave VFs out of it")
    raise CniError(ErrorCode.DEVICE_UNUSABLE, f"PF {pf}: all {len(vfs)} VFs are attached",
                   "; ".join(f"{vf} to {held[vf]}" for _, vf in vfs))


def pf_address(call: Call, pf: str) -> str:
    """The PCI function behind host interface `pf` (a host name: pods cannot rename it), from
    the kernel's class link (``class/net/<pf> -> ../../devices/.../<pci address>/net/<pf>``)."""
    link = call.ctx.sysfs.net_class_dir(pf)
    try:
        parts = os.readlink(link).split("/")
    except OSError as exc:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"PF {pf}: no such network interface in the host",
                       f"{link}: {exc.strerror}") from None
    address = normalize_pci_address(parts[-3]) if len(parts) >= 3 and parts[-2] == "net" else None
    if address is None:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"PF {pf} is not a PCI network function", f"{link} is not on PCI")
    return address


@contextlib.contextmanager
def locked_device(call: Call) -> Iterator[tuple[str, Device | None]]:
    """The device of this ADD, under its per-VF lock: `deviceID` as given, else a VF picked from the
    PF; with it the VF as read while picking it (None when it was not read: ADD resolves it)."""
    store, timeout = call.ctx.store, call.ctx.lock_timeout_s
    if call.conf.device_id is not None:
        with store.lock(call.conf.device_id, timeout):
            yield call.conf.device_id, None
        return
    assert call.conf.pf is not None  # parse_netconf(need_device=True) guarantees one of them
    pf = call.conf.pf
    address = pf_address(call, pf)
    try:
        dev = discover_device(call.ctx.sysfs, address)
    except DeviceNotFoundError as exc:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"PF {pf}: no such PCI device", str(exc)) from None
    if dev.is_vf or not dev.has_vfs:  # a VF named directly, or a PF passed through whole (seeds' fix 4)
        with store.lock(address, timeout):
            yield address, None
        return
    vfs = virtfns(call.ctx.sysfs, address)
    held = {r.pci_address: f"container {r.container_id} as {r.ifname}" for r in store.records(pending=True)}
    order = candidate_vfs(pf, vfs, held, pooled_devices(pools_path(call.ctx.state_dir)))
    busy: list[str] = []
    # first whatever no other call is working on, then wait for the rest in turn
    for wait, vfs_now in ((0.0, order), (timeout, busy)):
        for vf in list(vfs_now):
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(store.lock(vf, wait))
                except LockTimeout:
                    if not wait:
                        busy.append(vf)
                    continue
                device = _usable(call, vf)
                if device is not None:
                    call.log.info("picked VF", pf=pf, pci=vf)
                    yield vf, device
                    return
    raise CniError(ErrorCode.DEVICE_UNUSABLE, f"PF {pf}: no free VF",
                   f"tried {', '.join(order)}: attached meanwhile, busy or without an interface in the host")


def _usable(call: Call, vf: str) -> Device | None:
    """Under the VF's lock: the VF, when no attachment took it meanwhile and the kernel shows it
    usable here; else None."""
    if call.ctx.store.owner_of(vf) is not None:
        return None
    try:
        return resolve_device(call.ctx.sysfs, vf, call.ctx.netlink.device_netdev(vf), want_driver=call.conf.driver)
    except CniError as exc:
        call.log.debug("VF skipped", pci=vf, reason=exc.msg)
        return None
