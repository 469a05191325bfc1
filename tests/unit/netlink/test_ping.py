"""ICMP echo encoding and reply matching (the demo's pod-to-pod ping), without root."""

from __future__ import annotations

import struct

from sriovkit.netlink.ping import ICMP_ECHO_REPLY, checksum, echo_request, is_echo_reply


def _ipv4_header(ihl_words: int = 5) -> bytes:
    return bytes([0x40 | ihl_words]) + bytes(ihl_words * 4 - 1)


def test_echo_request_checksum_verifies_to_zero() -> None:
    packet = echo_request(0x1234, 7, b"sriovkit")
    assert checksum(packet) == 0
    assert struct.unpack("!BBHHH", packet[:8])[3:] == (0x1234, 7)


def test_odd_length_payload_is_padded_for_the_checksum() -> None:
    assert checksum(echo_request(1, 1, b"abc")) == 0


def test_reply_matching_uses_type_id_and_sequence_after_a_variable_ip_header() -> None:
    reply = struct.pack("!BBHHH", ICMP_ECHO_REPLY, 0, 0, 0x1234, 7)
    assert is_echo_reply(_ipv4_header() + reply, 0x1234, 7)
    assert is_echo_reply(_ipv4_header(6) + reply, 0x1234, 7)
    assert not is_echo_reply(_ipv4_header() + reply, 0x1234, 8)
    assert not is_echo_reply(_ipv4_header() + reply, 0x4321, 7)
    request = echo_request(0x1234, 7, b"")
    assert not is_echo_reply(_ipv4_header() + request, 0x1234, 7), "our own request is not an answer"
    assert not is_echo_reply(b"\x45\x00", 0x1234, 7)
