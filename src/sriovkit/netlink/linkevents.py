"""The kernel's link notifications (RTMGRP_LINK) on a plain netlink socket: which links changed.

A subscriber is told of every link of its network namespace: on a node that is every pod's veth
and every VF moving in or out. `LinkEvents.changed` gives the names the next datagram names, so a
reader can ignore the links it does not watch without decoding anything else; `LinkEvents.drain`
gives what is queued now, without waiting, with each link's index and whether it came or went.
"""

from __future__ import annotations

import errno
import socket
from typing import NamedTuple

from sriovkit.netlink.rawlink import name_of
from sriovkit.netlink.rtmsg import IFINFOMSG, NETLINK_ROUTE, RTM_DELLINK, RTM_NEWLINK, messages

RTMGRP_LINK = 0x1
_RECEIVE_BUFFER = 1 << 20  # a burst of pod starts: many notifications before the reader runs
# ifi_change of the notification for a link that appeared in the namespace (made there, or moved
# in) or left it (deleted, or moved out); a change to a link that stays names the flags changed
ALL_CHANGED = 0xFFFFFFFF


class LinkNote(NamedTuple):
    """One link notification: RTM_NEWLINK or RTM_DELLINK, the link's index and name, and ifi_change."""

    kind: int
    ifindex: int
    name: str | None
    change: int

    @property
    def appeared(self) -> bool:
        """The link was made in the namespace, or moved into it."""
        return self.kind == RTM_NEWLINK and self.change == ALL_CHANGED


class LinkEvents:
    """A socket subscribed to link notifications; `changed()` waits up to `timeout_s` for the next
    (0: not at all, the socket is non-blocking, as `drain` wants it: Python waits out a socket's
    timeout before any read)."""

    def __init__(self, timeout_s: float = 0.5) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            self.sock.bind((0, RTMGRP_LINK))
            self.sock.settimeout(timeout_s)
        except OSError:
            self.sock.close()
            raise
        self._buf = bytearray(1 << 16)

    def changed(self) -> list[str] | None:
        """The names of the links the next datagram tells of ([] when none came in time), or
        None when the kernel dropped notifications (the socket overran): anything may have changed."""
        try:
            size = self.sock.recv_into(self._buf)
        except (TimeoutError, BlockingIOError):
            return []
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return None
            raise
        return link_names(memoryview(self._buf)[:size])

    def drain(self) -> list[LinkNote] | None:
        """Every notification queued now, read without waiting (on a socket made with `timeout_s`
        0; any other waits that long at the end); None when the kernel dropped some since the
        last read (the socket overran: anything may have changed). The queue is read to its end
        either way, so the next call starts afresh."""
        notes: list[LinkNote] = []
        overran = False
        while True:
            try:
                size = self.sock.recv_into(self._buf)
            except (BlockingIOError, TimeoutError):
                return None if overran else notes
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                overran = True
                continue
            notes += link_notes(memoryview(self._buf)[:size])

    def close(self) -> None:
        self.sock.close()


def link_names(data: bytes | memoryview) -> list[str]:
    """The IFLA_IFNAME of each RTM_NEWLINK/RTM_DELLINK in one datagram (pure)."""
    return [note.name for note in link_notes(data) if note.name is not None]


def link_notes(data: bytes | memoryview) -> list[LinkNote]:
    """Each RTM_NEWLINK/RTM_DELLINK in one datagram, read from its header and name (pure)."""
    notes = []
    for kind, _, start, end in messages(data, len(data)):
        if kind in (RTM_NEWLINK, RTM_DELLINK) and end - start >= IFINFOMSG.size:
            _, _, index, _, change = IFINFOMSG.unpack_from(data, start)
            notes.append(LinkNote(kind, index, name_of(data[start:end]), change))
    return notes
