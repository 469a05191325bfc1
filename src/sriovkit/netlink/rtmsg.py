"""rtnetlink's format: the change requests the port sends, encoded as the kernel reads them, and
the walk over a message's attributes that the decoders share (pure).

`messages` walks a datagram's netlink messages as `walk` walks a message's attributes. Each
function below them returns one request's body (after the netlink header): an ifinfomsg, ifaddrmsg or
rtmsg and its attributes, byte for byte what pyroute2 0.9 sends for the same call (the
differential test, tests/unit/netlink/test_rtmsg.py, holds them equal), so the kernel sees the
same request either way. Sent by `rawlink.LinkQuery.change`: through pyroute2 each of these costs
its request filters, encoder and an asyncio round on its socket, about ten times the kernel's own
work for a link change, and a CNI call makes a dozen of them.

Field layouts: include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator

from sriovkit.netlink.model import LinkState, VlanProto

NETLINK_ROUTE = 0
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_NEWROUTE = 24
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

IFF_UP = 0x1
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_IFALIAS = 20
IFLA_VFINFO_LIST = 22
IFLA_NET_NS_FD = 28
IFLA_VF_INFO = 1
IFLA_VF_MAC = 1
IFLA_VF_VLAN = 2
IFLA_VF_SPOOFCHK = 4
IFLA_VF_LINK_STATE = 5
IFLA_VF_RATE = 6
IFLA_VF_TRUST = 9
IFLA_VF_VLAN_LIST = 12
IFLA_VF_VLAN_INFO = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RTN_UNICAST = 1
VF_MAC_BYTES = 32  # struct ifla_vf_mac's mac[32]

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFINFOMSG_BYTES = IFINFOMSG.size
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_VF_U32 = struct.Struct("=II")  # vf, setting: spoofchk, trust, link_state
_VF_VLAN = struct.Struct("=III")  # vf, vlan, qos
_VF_RATE = struct.Struct("=III")  # vf, min_tx_rate, max_tx_rate
_VF_VLAN_INFO = struct.Struct("=III H2x")  # vf, vlan, qos, vlan_proto (big endian on the wire), padding


NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER


def messages(data: bytes | memoryview, size: int) -> Iterator[tuple[int, int, int, int]]:
    """(type, seq, body start, end) of each netlink message in data[:size]; a truncated one ends
    the walk."""
    offset = 0
    while offset + NLMSGHDR.size <= size:
        length, kind, _, seq, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > size:
            return
        yield kind, seq, offset + NLMSGHDR.size, offset + length
        offset += (length + 3) & ~3


def spans(data: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in data[start:end], nothing copied (a
    reader keeping a few of many attributes copies only those); a truncated one ends the walk."""
    offset = start
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            return
        yield kind & NLA_TYPE_MASK, offset + 4, offset + length
        offset += (length + 3) & ~3


def walk(data: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each attribute in data[start:end]; a truncated one ends the walk."""
    for kind, begin, stop in spans(data, start, end):
        yield kind, bytes(data[begin:stop])


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (((length + 3) & ~3) - length)


def _nest(kind: int, parts: Iterable[bytes]) -> bytes:
    return attr(kind, b"".join(parts))


def _name(value: str) -> bytes:
    return value.encode() + b"\0"


def _mac(mac: str) -> bytes:
    try:
        return bytes(int(part, 16) for part in mac.split(":"))
    except ValueError:  # a part that is not hex, or more than a byte
        raise ValueError(f"{mac!r} is not a hardware address") from None


def link_change(index: int, *, up: bool | None = None, attrs: Iterable[bytes] = ()) -> bytes:
    """RTM_NEWLINK for an existing link: `up` sets or clears IFF_UP (None: leaves it)."""
    flags, change = (0, 0) if up is None else (IFF_UP if up else 0, IFF_UP)
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change) + b"".join(attrs)


def ifname(name: str) -> bytes:
    return attr(IFLA_IFNAME, _name(name))


def mtu(value: int) -> bytes:
    return attr(IFLA_MTU, _U32.pack(value))


def address(mac: str) -> bytes:
    return attr(IFLA_ADDRESS, _mac(mac))


def ifalias(alias: str) -> bytes:
    return attr(IFLA_IFALIAS, _name(alias))


def net_ns_fd(fd: int) -> bytes:
    return attr(IFLA_NET_NS_FD, _U32.pack(fd))


def _vf(*settings: bytes) -> bytes:
    """IFLA_VFINFO_LIST holding one IFLA_VF_INFO with `settings`."""
    return _nest(IFLA_VFINFO_LIST, [_nest(IFLA_VF_INFO, settings)])


def vf_mac(vf: int, mac: str) -> bytes:
    return _vf(attr(IFLA_VF_MAC, _U32.pack(vf) + _mac(mac).ljust(VF_MAC_BYTES, b"\0")))


def vf_vlan(vf: int, vlan: int, qos: int, proto: VlanProto) -> bytes:
    """802.1Q as IFLA_VF_VLAN (what `ip link set PF vf N vlan V qos Q` sends, and all that drivers
    without 802.1ad accept); 802.1ad as IFLA_VF_VLAN_LIST, whose entry is 16 bytes with padding."""
    if proto is VlanProto.DOT1Q:
        return _vf(attr(IFLA_VF_VLAN, _VF_VLAN.pack(vf, vlan, qos)))
    info = bytearray(_VF_VLAN_INFO.pack(vf, vlan, qos, 0))
    struct.pack_into("!H", info, 12, int(proto))
    return _vf(_nest(IFLA_VF_VLAN_LIST, [attr(IFLA_VF_VLAN_INFO, bytes(info))]))


def vf_spoofchk(vf: int, enabled: bool) -> bytes:
    return _vf(attr(IFLA_VF_SPOOFCHK, _VF_U32.pack(vf, int(enabled))))


def vf_trust(vf: int, enabled: bool) -> bytes:
    return _vf(attr(IFLA_VF_TRUST, _VF_U32.pack(vf, int(enabled))))


def vf_link_state(vf: int, state: LinkState) -> bytes:
    return _vf(attr(IFLA_VF_LINK_STATE, _VF_U32.pack(vf, int(state))))


def vf_rate(vf: int, min_tx_rate: int, max_tx_rate: int) -> bytes:
    return _vf(attr(IFLA_VF_RATE, _VF_RATE.pack(vf, min_tx_rate, max_tx_rate)))


def address_change(index: int, cidr: str) -> bytes:
    """RTM_NEWADDR / RTM_DELADDR body for `cidr` (address/prefix) on link `index`: IPv4 with
    IFA_LOCAL too, as the kernel needs it for the interface's own address."""
    iface = ipaddress.ip_interface(cidr)
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    packed = iface.ip.packed
    attrs = attr(IFA_ADDRESS, packed) + (attr(IFA_LOCAL, packed) if family == socket.AF_INET else b"")
    return _IFADDRMSG.pack(family, iface.network.prefixlen, 0, 0, index) + attrs


def route_add(dst: str, gateway: str | None, oif: int) -> bytes:
    """RTM_NEWROUTE body: `dst` (a prefix; 0.0.0.0/0 and ::/0 the default) through link `oif`, via
    `gateway` if given, in the main table, as a static unicast route."""
    target = ipaddress.ip_interface(dst)  # as given: the kernel refuses host bits beyond the prefix
    family = socket.AF_INET if target.version == 4 else socket.AF_INET6
    prefixlen = target.network.prefixlen
    head = _RTMSG.pack(family, prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, 0, RTN_UNICAST, 0)
    attrs = attr(RTA_DST, target.ip.packed) if prefixlen or int(target.ip) else b""
    attrs += attr(RTA_OIF, _U32.pack(oif))
    if gateway:
        attrs += attr(RTA_GATEWAY, ipaddress.ip_address(gateway).packed)
    return head + attrs
