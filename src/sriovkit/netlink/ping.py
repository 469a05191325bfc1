"""ICMP echo from inside a network namespace: "can pod A reach pod B" without exec'ing ping.

The raw socket is created in the namespace (see `netns.socket_in_netns`), so the request leaves
through that namespace's interfaces and routes, exactly as the pod's own traffic would.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from sriovkit.netlink.netns import socket_in_netns

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
_IPV4_HEADER_MIN = 20


def ping(netns: str | None, address: str, *, count: int = 3, timeout_s: float = 1.0) -> list[float | None]:
    """Round-trip times in seconds for `count` echoes from `netns` to an IPv4 `address` (None: lost)."""
    sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    try:
        return [_echo(sock, address, ident, seq, timeout_s) for seq in range(1, count + 1)]
    finally:
        sock.close()


def _echo(sock: socket.socket, address: str, ident: int, seq: int, timeout_s: float) -> float | None:
    start = time.monotonic()
    sock.sendto(echo_request(ident, seq, b"sriovkit"), (address, 0))
    deadline = start + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            packet, (source, _) = sock.recvfrom(2048)
        except TimeoutError:
            return None
        if source == address and is_echo_reply(packet, ident, seq):
            return time.monotonic() - start
    return None


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def is_echo_reply(packet: bytes, ident: int, seq: int) -> bool:
    """Whether a raw IPv4 packet (header included, as raw sockets deliver it) answers our echo."""
    if len(packet) < _IPV4_HEADER_MIN + 8:
        return False
    header_len = (packet[0] & 0x0F) * 4
    kind, _, _, got_ident, got_seq = struct.unpack("!BBHHH", packet[header_len:header_len + 8])
    return bool(kind == ICMP_ECHO_REPLY and got_ident == ident and got_seq == seq)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
