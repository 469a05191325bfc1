"""ADD: give a pod a VF (or a PF passed through). This is where VFs move into a namespace.

The step list, each step with its undo on an ExitStack (see `steps.Steps`):

 1. lock the VF; refuse it if another attachment holds it
 2. snapshot the original state (host name, MAC, MTU, up, driver, every PF-side setting)
 3. bind the requested driver (userspace mode), undo: rebind the original
 4. PF-side settings: vlan/qos/proto, admin MAC, rates, spoofchk, trust, link_state
 5. move the interface into CNI_NETNS renamed to CNI_IFNAME in one request (the
    name never exists twice; a name already taken in the pod fails here cleanly)
 6. MAC, MTU, up
 7. IPAM ADD (undo: IPAM DEL), then addresses and routes, then announce them. A plugin that
    never looks at the pod's interface (host-local, static, whereabouts) is started right after
    the journal, on a thread of its own, and its answer taken here (`steps.Steps.start`)
 8. the Device Information file
 9. the state record, written atomically only now that every step succeeded (the journal
    stays beside it until DEL: `sriovkit.cni.state`, "Durability")
"""

from __future__ import annotations

import dataclasses
import json
from functools import partial

from sriovkit.cni import cnidir, vfconfig
from sriovkit.cni.announce import announce
from sriovkit.cni.device import Device, Mode, resolve_device
from sriovkit.cni.deviceinfo import check_device_info_file, remove_device_info, write_device_info
from sriovkit.cni.ipam import IpamCall, ipam_add, ipam_del, runs_alongside
from sriovkit.cni.locate import find_vf
from sriovkit.cni.netdevmac import set_netdev_mac
from sriovkit.cni.pick import locked_device
from sriovkit.cni.spec import CniError, ErrorCode, Interface, Result
from sriovkit.cni.state import AttachmentRecord, ForeignRecord, OriginalState
from sriovkit.cni.steps import Call, Started, Steps, ipam_call
from sriovkit.devinfo import pci_device_info
from sriovkit.netlink.errors import LinkNotFoundError
from sriovkit.netlink.model import ZERO_MAC


def attach(call: Call) -> Result:
    conf, env, store = call.conf, call.env, call.ctx.store
    timeout = call.ctx.lock_timeout_s
    # the VF is deviceID, or one picked from the seeds' PF (if0/master): locked either way
    with store.attachment_lock(env.container_id, env.ifname, timeout), locked_device(call) as (pci, picked):
        call.log.bind(pci=pci)
        call.faults.reached("lock taken")
        _refuse_if_taken(call, pci)
        # a path the caller chose: refused before any change, not half-way
        fresh = bool(conf.device_info_file) and not check_device_info_file(
            call.ctx.devinfo_dir, conf.device_info_file, call.ctx.caller_path(call.ctx.devinfo_dir))
        device = picked if picked is not None else resolve_device(
            call.ctx.sysfs, pci, call.ctx.netlink.device_netdev(pci), want_driver=conf.driver)
        _refuse_settings_for_pf(call, device)
        with Steps(call.log, "ADD", call.faults) as steps:
            record = steps.run("snapshot", lambda: _snapshot(call, device))
            record.device_info_root, record.device_info_fresh = call.ctx.devinfo_dir, fresh
            _write_journal(call, steps, device, record)
            result = _run_steps(call, steps, device, record)
            if record.cni_file is not None:  # only now: after the bind and every other step (seeds' fix 1)
                steps.run("write the cniDir record", lambda: cnidir.publish_record(record),
                          lambda: cnidir.withdraw_record(record), point="write cni dir")
            steps.run("save state", lambda: store.save(record))
            steps.commit()
    call.log.info("attached", mode=device.mode.value,
                  ips=",".join(ip.address for ip in result.ips))
    return result


def _refuse_if_taken(call: Call, pci: str) -> None:
    env = call.env
    try:
        existing = call.ctx.store.load(env.container_id, env.ifname, pending=True)
    except ForeignRecord as exc:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"attachment {env.attachment} cannot be recorded",
                       f"{exc.msg} ({exc.details}); use another CNI_IFNAME") from None
    if existing is not None:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"attachment {env.attachment} already exists",
                       "DEL it before adding it again (also after an interrupted ADD)")
    owner = call.ctx.store.owner_of(pci)
    if owner is not None:
        raise CniError(ErrorCode.DEVICE_UNUSABLE, f"deviceID {pci} is already attached",
                       f"to container {owner.container_id} as {owner.ifname}")


def _refuse_settings_for_pf(call: Call, device: Device) -> None:
    if device.mode is not Mode.PF:
        return
    c = call.conf
    asked = [name for name, value in (("vlan", c.vlan), ("spoofchk", c.spoofchk), ("trust", c.trust),
                                      ("link_state", c.link_state), ("min_tx_rate", c.min_tx_rate),
                                      ("max_tx_rate", c.max_tx_rate)) if value is not None]
    if asked:
        raise CniError(ErrorCode.INVALID_CONFIG, f"deviceID {device.pci_address} is a PF passed through",
                       f"VF settings do not apply to it: {', '.join(asked)}")


def _snapshot(call: Call, device: Device) -> AttachmentRecord:
    nl, env = call.ctx.netlink, call.env
    original = OriginalState(driver=device.driver)
    if device.netdev is not None:
        link = nl.find_link(device.netdev)
        if link is None:
            raise CniError(ErrorCode.DEVICE_UNUSABLE, f"interface {device.netdev} of {device.pci_address} vanished")
        original.host_ifname, original.mac, original.mtu, original.up = link.name, link.mac, link.mtu, link.up
        original.ifindex, original.perm_mac = link.index, link.perm_mac  # with the PCI address: who it is
    if device.pf_netdev is not None and device.vf_index is not None:
        original.vf = vfconfig.settings_to_dict(nl.vf_settings(device.pf_netdev, device.vf_index))
    call.log.debug("snapshot", host_ifname=original.host_ifname, mac=original.mac, mtu=original.mtu,
                   vf=json.dumps(original.vf, sort_keys=True))
    return AttachmentRecord(container_id=env.container_id, ifname=env.ifname, netns=env.netns,
                            network=call.conf.name, pci_address=device.pci_address, mode=device.mode.value,
                            pf_netdev=device.pf_netdev, vf_index=device.vf_index, original=original,
                            device_info_file=call.conf.device_info_file, config=json.dumps(dict(call.conf.raw)),
                            runtime_ifname=env.runtime_ifname, cni_file=cnidir.plan(call, call.ctx.cni_dir_roots()),
                            cni_path=list(env.path), cni_args=env.raw_args)


def _write_journal(call: Call, steps: Steps, device: Device, record: AttachmentRecord) -> None:
    """Before the first change: what DEL needs should this process die half-way through ADD."""
    planned = []
    if record.original.vf is not None:
        original = vfconfig.settings_from_dict(record.original.vf)
        planned = [s.key for s in vfconfig.wanted_settings(call.conf, original)]
    rebind = call.conf.driver if call.conf.driver not in (None, device.driver) else None
    journal = dataclasses.replace(record, complete=False, changed_vf=planned, bound_driver=rebind)
    store, env = call.ctx.store, call.env
    # registered first, so it is undone last: until every undo ran, the journal stays
    steps.run("write journal", lambda: store.save(journal),
              lambda: store.delete(env.container_id, env.ifname, only_pending=True), point="write journal")


def _run_steps(call: Call, steps: Steps, device: Device, record: AttachmentRecord) -> Result:
    # seeds' l2enable: no addresses, only up
    ipam = ipam_call(call) if call.conf.ipam_type and not call.conf.l2enable else None
    early = _start_ipam(steps, ipam) if ipam is not None else None
    _bind_driver(call, steps, device, record)
    _apply_vf_settings(call, steps, device, record)
    if device.mode is not Mode.USERSPACE:
        _move_into_pod(call, steps, device, record)
    result = Result(interfaces=[Interface(name=call.env.ifname, mac=_result_mac(call, record),
                                          sandbox=call.env.netns, mtu=call.conf.mtu, pci_id=device.pci_address)])
    if ipam is not None:
        _run_ipam(call, steps, device, record, result, ipam, early)
    if call.conf.device_info_file:
        _write_device_info(call, steps, device, record)
    return result


def _write_device_info(call: Call, steps: Steps, device: Device, record: AttachmentRecord) -> None:
    root, path = call.ctx.devinfo_dir, call.conf.device_info_file
    reached = call.ctx.caller_path(root)
    info = pci_device_info(device.pci_address, pf_pci_address=device.pf_address)  # none for a PF passed through
    created = steps.run("write device info", lambda: write_device_info(root, path, info, reached),
                        lambda: remove_device_info(root, path, record.device_info_created, reached=reached),
                        point="write device info")
    record.device_info_created = created
    if created is None:
        call.log.info("device info file already there, left as it is", path=path)


def _bind_driver(call: Call, steps: Steps, device: Device, record: AttachmentRecord) -> None:
    wanted = call.conf.driver
    if wanted is None or wanted == device.driver:
        return
    if call.conf.kernel_driver not in (None, device.driver):
        call.log.warning("dpdk.kernel_driver is not the VF's driver: DEL binds the VF's own driver back",
                         kernel_driver=call.conf.kernel_driver, driver=device.driver or "none")
    binder = call.ctx.driver_binder()
    original = device.driver
    steps.run(f"bind driver {wanted}", lambda: binder.bind_driver(device.pci_address, wanted),
              lambda: binder.bind_driver(device.pci_address, original), point="bind driver")
    record.bound_driver = wanted


def _apply_vf_settings(call: Call, steps: Steps, device: Device, record: AttachmentRecord) -> None:
    if device.pf_netdev is None or device.vf_index is None or record.original.vf is None:
        return
    nl, pf, index = call.ctx.netlink, device.pf_netdev, device.vf_index
    original = vfconfig.settings_from_dict(record.original.vf)
    for setting in vfconfig.wanted_settings(call.conf, original):
        steps.run(setting.name, partial(setting.apply, nl, pf, index),
                  partial(vfconfig.restore_setting, nl, pf, index, setting.key, original), point=f"vf {setting.key}")
        record.changed_vf.append(setting.key)


def _move_into_pod(call: Call, steps: Steps, device: Device, record: AttachmentRecord) -> None:
    nl, env, conf = call.ctx.netlink, call.env, call.conf
    host_name, pod_name, netns = record.original.host_ifname or "", env.ifname, env.netns
    index = record.original.ifindex
    steps.run(f"move {host_name} into {netns} as {pod_name}",
              lambda: nl.move_link(host_name, src_netns=None, dst_netns=netns, new_name=pod_name, index=index),
              lambda: _move_back(call, record), point="move into pod")
    if conf.mac is not None and conf.mac != (record.original.mac or "").lower():
        mac, old_mac = conf.mac, record.original.mac or ""
        steps.run(f"set mac {mac}", lambda: set_netdev_mac(nl, pod_name, mac, netns),
                  lambda: set_netdev_mac(nl, pod_name, old_mac, netns), point="set mac")
    if conf.mtu is not None and conf.mtu != record.original.mtu:
        mtu, old_mtu = conf.mtu, record.original.mtu or 0
        steps.run(f"set mtu {mtu}", lambda: nl.set_link_mtu(pod_name, mtu, netns),
                  lambda: nl.set_link_mtu(pod_name, old_mtu, netns), point="set mtu")
    steps.run("set up", lambda: nl.set_link_up(pod_name, True, netns),
              lambda: nl.set_link_up(pod_name, False, netns))
    link = steps.run("read the pod interface", lambda: find_vf(nl, device.pci_address, netns, ifindex=index),
                     point="read pod interface")
    record.pod_mac = link.mac if link is not None else (conf.mac or "")
    record.pod_ifindex = link.index if link is not None else None


def _move_back(call: Call, record: AttachmentRecord) -> None:
    """ADD's undo: the VF (found by what the kernel says it is) back to the host."""
    nl, host_name, netns = call.ctx.netlink, record.original.host_ifname or "", call.env.netns
    link = find_vf(nl, record.pci_address, netns, ifindex=record.pod_ifindex, perm_mac=record.original.perm_mac)
    if link is None:
        if find_vf(nl, record.pci_address, None) is not None:
            return  # never left the host (or is back already)
        raise LinkNotFoundError(f"VF {record.pci_address}", f"in neither {netns} nor the host")
    nl.move_link(link.name, src_netns=netns, dst_netns=None, new_name=host_name, index=link.index)
    if record.original.up:
        nl.set_link_up(host_name, True)


def _result_mac(call: Call, record: AttachmentRecord) -> str:
    if record.pod_mac:
        return record.pod_mac
    if call.conf.mac:
        return call.conf.mac
    vf = record.original.vf
    admin = vf.get("mac", ZERO_MAC) if vf else ZERO_MAC
    return "" if admin == ZERO_MAC else str(admin)


def _start_ipam(steps: Steps, ipam: IpamCall) -> Started[Result] | None:
    """An IPAM plugin that never looks at the pod's interface (ipam.INTERFACE_BLIND) runs from
    the start, beside the VF's settings and move: its exec is most of an ADD's time on a slow
    node. Any other runs after the move, as upstream's does."""
    if not runs_alongside(ipam):
        return None
    return steps.start(f"IPAM {ipam.plugin} ADD", lambda: ipam_add(ipam), lambda: ipam_del(ipam))


def _run_ipam(call: Call, steps: Steps, device: Device, record: AttachmentRecord, result: Result,
              ipam: IpamCall, early: Started[Result] | None) -> None:
    if early is not None:
        got = steps.wait(early, point="ipam add")
    else:
        got = steps.run(f"IPAM {ipam.plugin} ADD", lambda: ipam_add(ipam), lambda: ipam_del(ipam), point="ipam add")
    for ip in got.ips:
        ip.interface = 0  # every address is the pod interface's
    result.ips, result.routes, result.dns = got.ips, got.routes, got.dns
    record.ips = [ip.address for ip in got.ips]
    if device.mode is Mode.USERSPACE:
        return  # the addresses are for the DPDK app to use; there is no kernel interface
    nl, name, netns = call.ctx.netlink, call.env.ifname, call.env.netns
    for ip in got.ips:
        steps.run(f"add address {ip.address}", partial(nl.add_address, name, ip.address, netns), point="add address")
    gateways = {ip.family: ip.gateway for ip in reversed(got.ips) if ip.gateway}
    for route in got.routes:
        gw = route.gw or gateways.get(_family(route.dst))
        steps.run(f"add route {route.dst}", partial(nl.add_route, route.dst, gw, name, netns), point="add route")
    failed = announce(netns, name, record.pod_mac, record.ips, record.pod_ifindex)
    if failed:
        call.log.warning("announce failed", addresses="; ".join(failed))
    call.faults.reached("announce")


def _family(cidr: str) -> int:
    return 6 if ":" in cidr else 4

