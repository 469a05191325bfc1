"""VF list decoding and receive-buffer sizing, on messages encoded by pyroute2 itself (no kernel)."""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from sriovkit.netlink.model import LinkState, VfSettings, VlanProto
from sriovkit.netlink.vfinfo import (
    MAX_VFS,
    NLA_MAX_LEN,
    decode_vf_list,
    receive_buffer_bytes,
    vf_list_message_bytes,
)

UNSUPPORTED = 0xFFFFFFFF  # what drivers without a knob report


def _vf_info(i: int, spoofchk: int, trust: int) -> tuple[str, dict[str, Any]]:
    return ("IFLA_VF_INFO", {"attrs": [
        ("IFLA_VF_MAC", {"vf": i, "mac": f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}"}),
        ("IFLA_VF_VLAN", {"vf": i, "vlan": i, "qos": i % 8}),
        ("IFLA_VF_VLAN_LIST", {"attrs": [("IFLA_VF_VLAN_INFO", {"vf": i, "vlan": i, "qos": i % 8, "proto": 0x88A8})]}),
        ("IFLA_VF_TX_RATE", {"vf": i, "tx_rate": 0}),
        ("IFLA_VF_SPOOFCHK", {"vf": i, "spoofchk": spoofchk}),
        ("IFLA_VF_LINK_STATE", {"vf": i, "link_state": i % 3}),
        ("IFLA_VF_RATE", {"vf": i, "min_tx_rate": i, "max_tx_rate": i + 1}),
        ("IFLA_VF_RSS_QUERY_EN", {"vf": i, "rss_query_en": 0}),
        ("IFLA_VF_TRUST", {"vf": i, "trust": trust}),
    ]})


def _pf_message(num_vfs: int, spoofchk: int = 0, trust: int = 1) -> bytes:
    msg = ifinfmsg()
    msg["index"] = 7
    # Listed in reverse: the decoder must order by VF index, not by arrival.
    vfs = [_vf_info(i, spoofchk, trust) for i in reversed(range(num_vfs))]
    msg["attrs"] = [("IFLA_IFNAME", "pf0"), ("IFLA_MTU", 1500), ("IFLA_VFINFO_LIST", {"attrs": vfs})]
    msg.encode()
    return bytes(msg.data)


def _decode(data: bytes) -> list[VfSettings]:
    return decode_vf_list(data[16:])  # the body, after the netlink header


def test_a_full_pf_message_fits_the_bound_the_attribute_limit_and_the_buffer() -> None:
    data = _pf_message(MAX_VFS)
    assert len(data) <= vf_list_message_bytes(MAX_VFS)
    assert len(data) <= NLA_MAX_LEN  # so its VF list attribute fits a 16-bit length too
    assert receive_buffer_bytes() >= 4 * len(data)


def test_bounds_grow_with_the_vf_count() -> None:
    assert vf_list_message_bytes(128) < vf_list_message_bytes(256)
    assert receive_buffer_bytes(256) >= 4 * vf_list_message_bytes(256)


def test_all_256_vfs_decode_in_index_order_with_their_values() -> None:
    settings = _decode(_pf_message(MAX_VFS))
    assert [s.vf_index for s in settings] == list(range(MAX_VFS))
    last = settings[-1]
    assert last.mac == "02:00:00:00:00:ff"
    assert (last.vlan, last.qos, last.vlan_proto) == (255, 7, VlanProto.DOT1AD)
    assert (last.spoofchk, last.trust) == (False, True)
    assert last.link_state == LinkState(255 % 3)
    assert (last.min_tx_rate, last.max_tx_rate) == (255, 256)


def test_knobs_a_driver_lacks_read_as_defaults() -> None:
    settings = _decode(_pf_message(2, spoofchk=UNSUPPORTED, trust=UNSUPPORTED))
    assert all(s.spoofchk is True and s.trust is False for s in settings)


def test_a_pf_without_vf_list_has_no_vfs() -> None:
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", "eth0")]
    msg.encode()
    assert _decode(bytes(msg.data)) == []


def test_short_or_truncated_attributes_read_as_defaults_not_as_garbage() -> None:
    body = bytearray(_pf_message(1)[16:])
    whole = _decode(_pf_message(1))
    assert decode_vf_list(bytes(body[:-8])) == []  # the VF list attribute cut: its length overruns the message
    spoof = body.index(struct.pack("=HHII", 12, 4, 0, 0))  # IFLA_VF_SPOOFCHK {vf 0, setting 0}
    struct.pack_into("=HH", body, spoof, 8, 4)  # now 4 bytes short of its struct; the rest is padding to skip
    struct.pack_into("=HH", body, spoof + 8, 4, 0)  # (a 4-byte attribute of no known type)
    (vf,) = decode_vf_list(bytes(body))
    assert vf.spoofchk is True and vf == replace(whole[0], spoofchk=True)
