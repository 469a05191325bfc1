"""Link reads and changes with plain rtnetlink requests, decoding only what the port reads.

pyroute2 decodes every attribute of every message it receives into Python objects (a veth's
RTM_NEWLINK: ~60 attributes, statistics, per-family config), which cost most of the agent's CPU
in a CNI call whose reads are "which link is this" and "what is its name, MAC, MTU". Here a read
is one request on a socket of its own (RTM_GETLINK for exactly one link, by index or name, with
statistics skipped), and the answer is walked once, keeping the handful of attributes below.
Changes still go through pyroute2.

`LinkMessage` answers `msg["index"]`, `msg["flags"]` and `msg.get_attr("IFLA_...")` for the
attributes it keeps, as a pyroute2 message does, so the code reading either is the same.

Changes (`LinkQuery.change`) are sent on the same socket, encoded by `sriovkit.netlink.rtmsg`, and
wait for the kernel's acknowledgement; a PF's VF list (`LinkQuery.vf_list`) is the one message
`sriovkit.netlink.vfinfo` decodes.
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
from collections.abc import Container
from typing import Any

from sriovkit.netlink.errors import NetlinkError, from_errno
from sriovkit.netlink.rtmsg import (
    IFINFOMSG,
    IFINFOMSG_BYTES,
    IFLA_IFNAME,
    NETLINK_ROUTE,
    NLMSGHDR,
    RTM_NEWLINK,
    attr,
    messages,
    spans,
    walk,
)

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_GETLINK = 18
RTM_NEWNSID = 88
RTM_GETNSID = 90
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
RTEXT_FILTER_VF = 1 << 0
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFLA_EXT_MASK = 29
NETNSA_NSID = 1
NETNSA_FD = 3
IFNAMSIZ = 16  # with its terminating NUL

_RTGENMSG = struct.Struct("=B3x")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
# a dump's datagrams are at most 32 KiB; one link's answer a few KiB, a PF's with its VF list (stats
# skipped) at most 64 KiB (vfinfo.vf_list_message_bytes(256))
_RECV_BYTES = 1 << 17


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _u32(raw: bytes) -> int:
    return int(_U32.unpack_from(raw)[0])


def _s32(raw: bytes) -> int:
    return int(_S32.unpack_from(raw)[0])


def _u8(raw: bytes) -> int:
    return raw[0]


# the attributes kept: number -> (pyroute2's name, decoder)
_LINK_ATTRS: dict[int, tuple[str, Any]] = {
    1: ("IFLA_ADDRESS", _mac),
    3: ("IFLA_IFNAME", _text),
    4: ("IFLA_MTU", _u32),
    5: ("IFLA_LINK", _u32),
    10: ("IFLA_MASTER", _u32),
    16: ("IFLA_OPERSTATE", _u8),
    20: ("IFLA_IFALIAS", _text),
    27: ("IFLA_GROUP", _u32),
    37: ("IFLA_LINK_NETNSID", _s32),
    54: ("IFLA_PERM_ADDRESS", _mac),
    56: ("IFLA_PARENT_DEV_NAME", _text),
    57: ("IFLA_PARENT_DEV_BUS_NAME", _text),
}
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1


class _Attrs:
    """Decoded attributes, read as pyroute2's messages are read."""

    __slots__ = ("attrs",)

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs

    def get_attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)


class LinkMessage(_Attrs):
    """One RTM_NEWLINK: its ifindex and flags, and the attributes of `_LINK_ATTRS` (and the
    link kind, as IFLA_LINKINFO's IFLA_INFO_KIND)."""

    __slots__ = ("flags", "index")

    def __init__(self, index: int, flags: int, attrs: dict[str, Any]) -> None:
        super().__init__(attrs)
        self.index = index
        self.flags = flags

    def __getitem__(self, key: str) -> int:
        if key == "index":
            return self.index
        if key == "flags":
            return self.flags
        raise KeyError(key)


def decode_link(data: bytes | memoryview, start: int, end: int) -> LinkMessage:
    """The RTM_NEWLINK whose body (after the netlink header) is data[start:end]. A link message
    carries some sixty attributes, of which a dozen are kept: only those are copied out
    (`rtmsg.spans`), copying each only to drop it was most of the cost of every read."""
    _, _, index, flags, _ = IFINFOMSG.unpack_from(data, start)
    attrs: dict[str, Any] = {}
    for kind, begin, stop in spans(data, start + IFINFOMSG.size, end):
        known = _LINK_ATTRS.get(kind)
        if known is not None:
            attrs[known[0]] = known[1](bytes(data[begin:stop]))
        elif kind == IFLA_LINKINFO:
            kinds = [_text(p) for k, p in walk(data, begin, stop) if k == IFLA_INFO_KIND]
            attrs["IFLA_LINKINFO"] = _Attrs({"IFLA_INFO_KIND": kinds[0]} if kinds else {})
    return LinkMessage(index, flags, attrs)


def possible_name(name: str) -> bool:
    """Whether some interface could be named `name` (shorter than IFNAMSIZ, no NUL)."""
    raw = name.encode()
    return bool(raw) and len(raw) < IFNAMSIZ and b"\0" not in raw


class LinkQuery:
    """Link reads on one netlink socket (in the namespace the socket was made in). Not
    thread-safe: one per thread, as the port's sockets are."""

    _seq = itertools.count(1)

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock if sock is not None else socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self._buf = bytearray(_RECV_BYTES)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def get(self, *, index: int | None = None, name: str | None = None) -> LinkMessage | None:
        """The link with ifindex `index` (or named `name`); None when there is none."""
        attrs = attr(IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS))
        if index is None:
            if not possible_name(name or ""):
                return None  # no link can have that name (the kernel answers ERANGE or EINVAL)
            attrs += attr(3, (name or "").encode() + b"\0")
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index or 0, 0, 0) + attrs
        try:
            found = self._request(RTM_GETLINK, NLM_F_REQUEST, body, RTM_NEWLINK)
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT, errno.EINVAL, errno.ERANGE):  # a name no link can have
                return None
            raise
        return found[0] if found else None

    def dump(self, names: Container[str] | None = None) -> list[LinkMessage]:
        """Every link of the namespace; with `names`, only the links so named (the others are
        not decoded). A dump does not wait for the RTNL lock on current kernels, where a get
        queues behind every move in progress."""
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS))
        replies = self._request_raw(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, body, RTM_NEWLINK)
        if names is not None:
            replies = [r for r in replies if name_of(r) in names]
        return [decode_link(reply, 0, len(reply)) for reply in replies]

    def vf_list(self, index: int) -> bytes:
        """The RTM_NEWLINK body of link `index` with its VF list (statistics skipped), undecoded."""
        mask = _U32.pack(RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS)
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attr(IFLA_EXT_MASK, mask)
        found = self._request_raw(RTM_GETLINK, NLM_F_REQUEST, body, RTM_NEWLINK)
        if not found:
            raise from_errno(errno.ENODEV, _what(RTM_GETLINK))
        return found[0]

    def change(self, kind: int, body: bytes, flags: int = 0) -> None:
        """Send one change request (`sriovkit.netlink.rtmsg` builds `body`) and wait for the kernel
        to acknowledge it; its refusal is raised as `from_errno`'s error."""
        self._request_raw(kind, NLM_F_REQUEST | NLM_F_ACK | flags, body, -1)

    def netnsid(self, netns_fd: int) -> int | None:
        """The id this socket's namespace knows the namespace open as `netns_fd` by, if it has one."""
        body = _RTGENMSG.pack(socket.AF_UNSPEC) + attr(NETNSA_FD, _U32.pack(netns_fd))
        for reply in self._request_raw(RTM_GETNSID, NLM_F_REQUEST, body, RTM_NEWNSID):
            for kind, payload in walk(reply, _RTGENMSG.size, len(reply)):
                if kind == NETNSA_NSID:
                    nsid = _s32(payload)
                    return nsid if nsid >= 0 else None
        return None

    def _request(self, kind: int, flags: int, body: bytes, answer: int) -> list[LinkMessage]:
        return [decode_link(reply, 0, len(reply)) for reply in self._request_raw(kind, flags, body, answer)]

    def _request_raw(self, kind: int, flags: int, body: bytes, answer: int) -> list[bytes]:
        seq = next(self._seq) & 0xFFFFFFFF
        self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body)
        replies: list[bytes] = []
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        while True:
            size = self.sock.recv_into(self._buf)
            view = memoryview(self._buf)[:size]
            for mtype, mseq, body_start, end in messages(view, size):
                if mseq != seq:
                    continue  # an answer to an earlier request that gave up (never ours to read)
                if mtype == NLMSG_ERROR:
                    code = -int(_S32.unpack_from(view, body_start)[0])
                    if code:
                        raise from_errno(code, _what(kind))
                    return replies
                if mtype == NLMSG_DONE:
                    return replies
                if mtype == answer:
                    replies.append(bytes(view[body_start:end]))
                    if not dump:
                        return replies


def name_of(reply: bytes | memoryview) -> str | None:
    """IFLA_IFNAME of an RTM_NEWLINK (or RTM_DELLINK) body, read without decoding the rest (the
    kernel puts it first)."""
    for kind, payload in walk(reply, IFINFOMSG_BYTES, len(reply)):
        if kind == IFLA_IFNAME:
            return _text(payload)
    return None


def _what(kind: int) -> str:
    return {RTM_GETLINK: "read link", RTM_GETNSID: "read netns id", RTM_NEWLINK: "change link"}.get(
        kind, f"netlink request {kind}")


def open_query(netns_fd_path: str | None = None) -> LinkQuery:
    """A LinkQuery in the caller's namespace (None), or in the one at `netns_fd_path`."""
    if netns_fd_path is None:
        return LinkQuery()
    from sriovkit.netlink.netns import socket_in_netns

    return LinkQuery(socket_in_netns(netns_fd_path, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE))
