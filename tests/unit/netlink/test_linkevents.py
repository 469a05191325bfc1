"""What a link notification datagram tells of (netlink.linkevents.link_names, link_notes)."""

from __future__ import annotations

import struct

from sriovkit.netlink import rtmsg
from sriovkit.netlink.linkevents import ALL_CHANGED, RTM_DELLINK, RTM_NEWLINK, LinkNote, link_names, link_notes

RTM_NEWADDR = 20


def _message(kind: int, attrs: bytes, index: int = 7, change: int = 0) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, 0, change) + attrs
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


def test_notes_carry_index_name_and_whether_the_link_came_or_went() -> None:
    datagram = (_message(RTM_NEWLINK, rtmsg.ifname("arrived"), index=41, change=ALL_CHANGED)
                + _message(RTM_NEWLINK, rtmsg.mtu(1400) + rtmsg.ifname("changed"), index=42, change=0x1)
                + _message(RTM_NEWADDR, rtmsg.ifname("not-a-link"))
                + _message(RTM_DELLINK, rtmsg.ifname("left"), index=43, change=ALL_CHANGED)
                + _message(RTM_NEWLINK, rtmsg.mtu(1400), index=44))
    notes = link_notes(datagram)
    assert notes == [LinkNote(RTM_NEWLINK, 41, "arrived", ALL_CHANGED), LinkNote(RTM_NEWLINK, 42, "changed", 1),
                     LinkNote(RTM_DELLINK, 43, "left", ALL_CHANGED), LinkNote(RTM_NEWLINK, 44, None, 0)]
    assert [n.appeared for n in notes] == [True, False, False, False]  # a link leaving is no arrival


def test_a_note_needs_its_whole_header() -> None:
    short = struct.pack("=IHHII", 16 + 8, RTM_NEWLINK, 0, 0, 0) + b"\0" * 8
    assert link_notes(short + _message(RTM_DELLINK, rtmsg.ifname("vf3"), index=3)) == [
        LinkNote(RTM_DELLINK, 3, "vf3", 0)]
