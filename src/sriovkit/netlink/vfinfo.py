"""Decoding a PF's VF list from an RTM_NEWLINK answer (its bytes, walked once), and sizing the
receive for it.

The whole VF list of a PF arrives as one IFLA_VFINFO_LIST attribute in a single
message. With per-VF statistics that attribute outgrows its 16-bit length
field and the receive buffers Python netlink code used by default at about
108-127 VFs, so we ask the kernel to skip VF statistics (RTEXT_FILTER_SKIP_STATS)
and receive into a buffer sized for the largest PF (256 VFs).
"""

from __future__ import annotations

import struct
from typing import Required, TypedDict

from sriovkit.netlink.model import LinkState, VfSettings, VlanProto
from sriovkit.netlink.rtmsg import (
    IFINFOMSG_BYTES,
    IFLA_VF_INFO,
    IFLA_VF_LINK_STATE,
    IFLA_VF_MAC,
    IFLA_VF_RATE,
    IFLA_VF_SPOOFCHK,
    IFLA_VF_TRUST,
    IFLA_VF_VLAN,
    IFLA_VF_VLAN_INFO,
    IFLA_VF_VLAN_LIST,
    IFLA_VFINFO_LIST,
    walk,
)

RTEXT_FILTER_VF = 1 << 0
RTEXT_FILTER_SKIP_STATS = 1 << 3
VF_EXT_MASK = RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS

MAX_VFS = 256
# Per VF without stats: mac (40), vlan (16), vlan list (24), tx_rate (12), spoofchk (12),
# link_state (12), rate (16), rss_query_en (12), trust (12), the nest header (4) and
# room for IB GUIDs (2 x 40) on InfiniBand PFs.
VF_INFO_BYTES = 240
LINK_MESSAGE_OVERHEAD = 4096  # the link's own attributes (name, stats64, afspec ...)
# Netlink attributes carry a 16-bit length.
NLA_MAX_LEN = 0xFFFF
_U32 = struct.Struct("=I")
_U32X3 = struct.Struct("=III")
_LINK_STATES = frozenset(int(s) for s in LinkState)
_VLAN_PROTOS = frozenset(int(p) for p in VlanProto)


def vf_list_message_bytes(num_vfs: int) -> int:
    """Upper bound on the size of one PF's RTM_NEWLINK with its VF list, stats skipped."""
    return LINK_MESSAGE_OVERHEAD + num_vfs * VF_INFO_BYTES


def receive_buffer_bytes(num_vfs: int = MAX_VFS) -> int:
    """A socket receive buffer that holds a few such messages without drops."""
    return max(1 << 20, 4 * vf_list_message_bytes(num_vfs))


def decode_vf_list(body: bytes) -> list[VfSettings]:
    """All VFs of one PF from the body of its RTM_NEWLINK (after the netlink header), ordered by
    index; only IFLA_VFINFO_LIST is walked."""
    vflist = next((p for kind, p in walk(body, IFINFOMSG_BYTES, len(body)) if kind == IFLA_VFINFO_LIST), None)
    if vflist is None:
        return []
    result = [decode_vf(info) for kind, info in walk(vflist, 0, len(vflist)) if kind == IFLA_VF_INFO]
    return sorted(result, key=lambda s: s.vf_index)


class _VfFlags(TypedDict, total=False):
    """The on/off settings a driver reports (a knob it lacks is left out: VfSettings' default)."""

    spoofchk: bool
    trust: bool
    link_state: LinkState


class _VfFields(_VfFlags, total=False):
    """VfSettings' constructor arguments as the message gives them (what it lacks: the defaults)."""

    vf_index: Required[int]
    mac: Required[str]
    vlan: int
    qos: int
    vlan_proto: VlanProto
    min_tx_rate: int
    max_tx_rate: int


def decode_vf(info: bytes) -> VfSettings:
    """One IFLA_VF_INFO's payload; a setting it lacks (or sends short) reads as the default."""
    attrs = dict(walk(info, 0, len(info)))
    mac = attrs.get(IFLA_VF_MAC, b"")
    if len(mac) < _U32.size + 6:
        raise ValueError("IFLA_VF_INFO without IFLA_VF_MAC")  # every driver sends it: index and MAC
    fields: _VfFields = {"vf_index": _U32.unpack_from(mac)[0], "mac": ":".join(f"{b:02x}" for b in mac[4:10])}
    vlan = attrs.get(IFLA_VF_VLAN, b"")
    if len(vlan) >= _U32X3.size:
        _, fields["vlan"], fields["qos"] = _U32X3.unpack_from(vlan)
    vlist = attrs.get(IFLA_VF_VLAN_LIST, b"")
    entries = [p for kind, p in walk(vlist, 0, len(vlist)) if kind == IFLA_VF_VLAN_INFO and len(p) >= _U32X3.size + 2]
    if entries:
        proto = struct.unpack_from("!H", entries[0], _U32X3.size)[0]
        if proto in _VLAN_PROTOS:
            fields["vlan_proto"] = VlanProto(proto)
    _read_flags(attrs, fields)
    rate = attrs.get(IFLA_VF_RATE, b"")
    if len(rate) >= _U32X3.size:
        _, fields["min_tx_rate"], fields["max_tx_rate"] = _U32X3.unpack_from(rate)
    return VfSettings(**fields)


def _setting(attrs: dict[int, bytes], kind: int) -> int | None:
    """The value of a {vf, setting} attribute, if sent."""
    raw = attrs.get(kind, b"")
    return int(_U32.unpack_from(raw, 4)[0]) if len(raw) >= 2 * _U32.size else None


def _read_flags(attrs: dict[int, bytes], out: _VfFlags) -> None:
    """The on/off settings into `out`."""
    # Drivers that lack a knob report it as -1 (0xffffffff): keep the default then.
    spoof = _setting(attrs, IFLA_VF_SPOOFCHK)
    if spoof in (0, 1):
        out["spoofchk"] = bool(spoof)
    trust = _setting(attrs, IFLA_VF_TRUST)
    if trust in (0, 1):
        out["trust"] = bool(trust)
    state = _setting(attrs, IFLA_VF_LINK_STATE)
    if state is not None and state in _LINK_STATES:
        out["link_state"] = LinkState(state)
