"""The kernel's link notifications (RTMGRP_LINK) on a plain netlink socket: which links changed.

A subscriber is told of every link of its network namespace: on a node that is every pod's veth
and every VF moving in or out. `LinkEvents.changed` gives the names the next datagram names, so a
reader can ignore the links it does not watch without decoding anything else.
"""

from __future__ import annotations

import errno
import socket

from sriovkit.netlink.rawlink import name_of
from sriovkit.netlink.rtmsg import NETLINK_ROUTE, RTM_DELLINK, RTM_NEWLINK, messages

RTMGRP_LINK = 0x1
_RECEIVE_BUFFER = 1 << 20  # a burst of pod starts: many notifications before the reader runs


class LinkEvents:
    """A socket subscribed to link notifications; `changed()` waits up to `timeout_s` for the next."""

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
        except TimeoutError:
            return []
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return None
            raise
        return link_names(memoryview(self._buf)[:size])

    def close(self) -> None:
        self.sock.close()


def link_names(data: bytes | memoryview) -> list[str]:
    """The IFLA_IFNAME of each RTM_NEWLINK/RTM_DELLINK in one datagram (pure)."""
    found = (name_of(data[start:end]) for kind, _, start, end in messages(data, len(data))
             if kind in (RTM_NEWLINK, RTM_DELLINK))
    return [name for name in found if name is not None]
