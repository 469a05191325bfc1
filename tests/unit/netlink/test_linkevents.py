"""The names a link notification datagram tells of (netlink.linkevents.link_names)."""

from __future__ import annotations

import struct

from sriovkit.netlink import rtmsg
from sriovkit.netlink.linkevents import RTM_DELLINK, RTM_NEWLINK, link_names

RTM_NEWADDR = 20


def _message(kind: int, attrs: bytes) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, 7, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_every_link_message_of_a_datagram_is_named() -> None:
    datagram = (_message(RTM_NEWLINK, rtmsg.mtu(1500) + rtmsg.ifname("eth7"))
                + _message(RTM_NEWADDR, rtmsg.ifname("not-a-link"))
                + _message(RTM_DELLINK, rtmsg.ifname("vf3")))
    assert link_names(datagram) == ["eth7", "vf3"]


def test_a_truncated_message_ends_the_walk() -> None:
    whole = _message(RTM_NEWLINK, rtmsg.ifname("eth7"))
    assert link_names(whole + _message(RTM_NEWLINK, rtmsg.ifname("cut"))[:20]) == ["eth7"]
    assert link_names(b"") == []
