"""The agent's change requests (sriovkit.netlink.rtmsg, sent by rawlink's LinkQuery.change) against
pyroute2's encoding of the same calls: byte for byte the same request bodies, captured from what
pyroute2 sends on a real socket, for every change the port makes (links: up, down, MTU, MAC, alias,
rename, a move into another namespace; a PF's VF settings: MAC, 802.1Q and 802.1ad VLAN, spoofchk,
trust, link state, rates; IPv4 and IPv6 addresses and routes, with and without a gateway, the
default route). Then the same changes made through KernelNetlink land in the kernel as asked, and
the kernel's refusals come back as the port's errors (root)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink import rtmsg
from sriovkit.netlink.errors import InvalidValueError, LinkNotFoundError, NameInUseError, NotSupportedError
from sriovkit.netlink.kernel import KernelNetlink
from sriovkit.netlink.model import LinkState, VlanProto
from tests.support.names import NetnsFactory, unique_name

pytestmark = pytest.mark.root

_NLMSGHDR = struct.Struct("=IHHII")


@pytest.fixture
def veth(netns: NetnsFactory) -> Iterator[tuple[str, str, NetNS, int]]:
    """(namespace A, namespace B, pyroute2 in A, index of veth end v0 in A)."""
    a, b = netns(), netns()
    ipr = NetNS(os.path.basename(a))
    try:
        ipr.link("add", ifname="v0", kind="veth", peer={"ifname": "v1"})
        yield a, b, ipr, ipr.link_lookup(ifname="v0")[0]
    finally:
        ipr.close()


def pad_pyroute2_vlan_info() -> None:
    """pyroute2 0.9 encodes IFLA_VF_VLAN_INFO 2 bytes short of the kernel's struct (which refuses
    it): what the port used to patch into pyroute2, so the two encodings can be compared."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    info = ifinfmsg.vflist.vfinfo.vf_vlist.ivvi
    if not any(name == "__pad" for name, _ in info.fields):
        info.fields = (*info.fields, ("__pad", "2x"))


def sent_by_pyroute2(call: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, bytes]:
    """(type, flags, body) of the one request `call` makes pyroute2 send; the kernel's answer,
    refusal or not, does not matter here."""
    sent: list[bytes] = []
    real_send = socket.socket.send

    def capture(sock: socket.socket, data: bytes, *args: Any) -> int:
        sent.append(bytes(data))
        return real_send(sock, data, *args)

    with monkeypatch.context() as patch:
        patch.setattr(socket.socket, "send", capture)
        with contextlib.suppress(Pyroute2Error):
            call()
    assert len(sent) == 1, sent
    _, kind, flags, _, _ = _NLMSGHDR.unpack_from(sent[0])
    return kind, flags, sent[0][_NLMSGHDR.size:]


LINK, ACK = rtmsg.RTM_NEWLINK, 0x5  # NLM_F_REQUEST | NLM_F_ACK
CREATE = ACK | rtmsg.NLM_F_CREATE | rtmsg.NLM_F_EXCL


def cases(index: int, fd: int) -> list[tuple[str, dict[str, Any], tuple[int, int, bytes]]]:
    """(pyroute2 call, its arguments, what rtmsg encodes for it: type, flags, body)."""
    def link(kwargs: dict[str, Any], attr: bytes | None = None, up: bool | None = None) -> tuple[str, dict[str, Any],
                                                                                              tuple[int, int, bytes]]:
        body = rtmsg.link_change(index, up=up, attrs=[attr] if attr is not None else [])
        return "link", {"index": index, **kwargs}, (LINK, ACK, body)

    def vf(setting: dict[str, Any], attr: bytes) -> tuple[str, dict[str, Any], tuple[int, int, bytes]]:
        return link({"vf": {"vf": 3, **setting}}, attr)

    def addr(command: str, address: str, prefixlen: int) -> tuple[str, dict[str, Any], tuple[int, int, bytes]]:
        kind, flags = (rtmsg.RTM_NEWADDR, CREATE) if command == "add" else (rtmsg.RTM_DELADDR, ACK)
        return "addr", {"command": command, "index": index, "address": address, "prefixlen": prefixlen}, (
            kind, flags, rtmsg.address_change(index, f"{address}/{prefixlen}"))

    def route(dst: str, gateway: str | None = None, ours: str | None = None) -> tuple[str, dict[str, Any],
                                                                                     tuple[int, int, bytes]]:
        kwargs = {"dst": dst, "oif": index, **({"gateway": gateway} if gateway else {})}
        return "route", kwargs, (rtmsg.RTM_NEWROUTE, CREATE, rtmsg.route_add(ours or dst, gateway, index))

    return [
        link({"state": "up"}, up=True),
        link({"state": "down"}, up=False),
        link({"mtu": 1400}, rtmsg.mtu(1400)),
        link({"address": "02:11:22:33:44:55"}, rtmsg.address("02:11:22:33:44:55")),
        link({"ifalias": "a pod's alias"}, rtmsg.ifalias("a pod's alias")),
        link({"ifname": "net1"}, rtmsg.ifname("net1")),
        vf({"mac": "02:aa:bb:cc:dd:ee"}, rtmsg.vf_mac(3, "02:aa:bb:cc:dd:ee")),
        vf({"vlan": {"vlan": 100, "qos": 5}}, rtmsg.vf_vlan(3, 100, 5, VlanProto.DOT1Q)),
        vf({"vlan": [{"vlan": 100, "qos": 5, "proto": 0x88A8}]}, rtmsg.vf_vlan(3, 100, 5, VlanProto.DOT1AD)),
        vf({"spoofchk": 0}, rtmsg.vf_spoofchk(3, False)),
        vf({"trust": 1}, rtmsg.vf_trust(3, True)),
        vf({"link_state": 2}, rtmsg.vf_link_state(3, LinkState.DISABLE)),
        vf({"rate": {"min_tx_rate": 10, "max_tx_rate": 100}}, rtmsg.vf_rate(3, 10, 100)),
        addr("add", "10.9.8.7", 24),
        addr("add", "fd00::7", 64),
        addr("del", "10.9.8.7", 24),
        route("10.200.0.0/16"),
        route("10.201.0.0/16", "10.9.8.1"),
        route("0.0.0.0/0", "10.9.8.1"),
        route("fd01::/64"),
        route("::/0", "fd00::1"),
        route("10.202.3.4/32", ours="10.202.3.4"),  # a host route named without its /32
        # last: the link leaves (the cases after it would be refused, which does not matter here)
        link({"net_ns_fd": fd, "ifname": "net1"}, rtmsg.net_ns_fd(fd) + rtmsg.ifname("net1")),
    ]


def test_every_change_is_encoded_as_pyroute2_encodes_it(veth: tuple[str, str, NetNS, int],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _, b, ipr, index = veth
    pad_pyroute2_vlan_info()
    fd = os.open(b, os.O_RDONLY)
    try:
        for method, kwargs, ours in cases(index, fd):
            args = dict(kwargs)
            command = args.pop("command", "add" if method == "route" else "set")
            theirs = sent_by_pyroute2(lambda: getattr(ipr, method)(command, **args), monkeypatch)  # noqa: B023
            assert theirs == ours, (method, kwargs)
    finally:
        os.close(fd)


def test_the_802_1ad_vlan_entry_is_as_long_as_the_kernel_struct() -> None:
    """struct ifla_vf_vlan_info {u32 vf, vlan, qos; __be16 vlan_proto} is 16 bytes with padding;
    the kernel refuses a shorter attribute (found on a real igb PF: every VLAN was refused)."""
    body = rtmsg.vf_vlan(3, 100, 5, VlanProto.DOT1AD)
    info = body[12:]  # VFINFO_LIST, VF_INFO and VLAN_LIST headers (4 bytes each)
    length, kind = struct.unpack_from("=HH", info)
    assert (kind, length - 4) == (rtmsg.IFLA_VF_VLAN_INFO, 16)
    assert struct.unpack_from("=III", info, 4) == (3, 100, 5) and info[16:18] == b"\x88\xa8"


def test_changes_through_the_port_land_in_the_kernel(veth: tuple[str, str, NetNS, int]) -> None:
    a, b, ipr, index = veth
    nl = KernelNetlink(Sysfs(Path("/")))
    try:
        with nl.operation():
            nl.set_link_mtu("v0", 1400, a)
            nl.set_link_mac("v0", "02:11:22:33:44:55", a)
            nl.set_link_alias("v0", "a pod's alias", a)
            nl.set_link_up("v0", True, a)
            nl.add_address("v0", "10.9.8.7/24", a)
            nl.add_address("v0", "fd00::7/64", a)
            nl.add_route("10.200.0.0/16", "10.9.8.1", "v0", a)
            link = nl.find_link("v0", a)
            assert link is not None and (link.mtu, link.mac, link.alias, link.up) == (
                1400, "02:11:22:33:44:55", "a pod's alias", True)
            assert {"10.9.8.7/24", "fd00::7/64"} <= set(nl.addresses("v0", a))
            assert "10.200.0.0/16" in {r.dst for r in nl.routes("v0", a)}
            nl.delete_address("v0", "10.9.8.7/24", a)
            assert "10.9.8.7/24" not in nl.addresses("v0", a)
            nl.rename_link("v0", "v9", a)
            renamed = nl.find_link("v9", a)
            assert renamed is not None and renamed.index == index and not renamed.up
            nl.move_link("v9", src_netns=a, dst_netns=b, new_name="net1", index=index)
            assert nl.find_link("v9", a) is None and nl.find_link("net1", b) is not None
    finally:
        nl.close()


def test_a_vf_setting_on_a_link_without_vfs_is_refused_as_not_supported() -> None:
    """VF settings go to a PF in the host namespace: a host veth stands for one without VFs."""
    host, peer = unique_name("rtm"), unique_name("rtm")
    with IPRoute() as ipr:
        ipr.link("add", ifname=host, kind="veth", peer={"ifname": peer})
        nl = KernelNetlink(Sysfs(Path("/")))
        try:
            with pytest.raises(NotSupportedError, match=f"{host} vf 0 spoofchk off"):
                nl.set_vf_spoofchk(host, 0, False)
            with pytest.raises(NotSupportedError, match=f"{host} vf 1 vlan 5 qos 0 proto DOT1AD"):
                nl.set_vf_vlan(host, 1, 5, 0, VlanProto.DOT1AD)
            assert nl.all_vf_settings(host) == []
        finally:
            nl.close()
            ipr.link("del", ifname=host)


def test_the_kernels_refusals_are_the_ports_errors(veth: tuple[str, str, NetNS, int]) -> None:
    a, _, ipr, _ = veth
    ipr.link("add", ifname="w0", kind="veth", peer={"ifname": "w1"})
    nl = KernelNetlink(Sysfs(Path("/")))
    try:
        with pytest.raises(LinkNotFoundError):
            nl.set_link_up("nosuch", True, a)
        with pytest.raises(NameInUseError):
            nl.rename_link("v0", "w0", a)
        with pytest.raises(InvalidValueError, match="set v0 mac .*'02:11:zz:33:44:55' is not a hardware address"):
            nl.set_link_mac("v0", "02:11:zz:33:44:55", a)
        with pytest.raises(LinkNotFoundError, match="move gone from .* ENODEV"):  # the kernel's refusal, in our words
            nl.move_link("gone", src_netns=a, dst_netns=None, new_name="gone", index=2**31 - 1)
        with pytest.raises(LinkNotFoundError, match="interface nosuchpf: not found in host netns"):
            nl.all_vf_settings("nosuchpf")
        with pytest.raises(InvalidValueError):
            nl.add_address("v0", "10.9.8.300/24", a)
        nl.add_address("v0", "10.9.8.7/24", a)
        with pytest.raises(NameInUseError):  # EEXIST
            nl.add_address("v0", "10.9.8.7/24", a)
    finally:
        nl.close()
