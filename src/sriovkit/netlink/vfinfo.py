"""Decoding a PF's VF list from an RTM_NEWLINK answer, and sizing the receive for it.

The whole VF list of a PF arrives as one IFLA_VFINFO_LIST attribute in a single
message. With per-VF statistics that attribute outgrows its 16-bit length
field and the receive buffers Python netlink code used by default at about
108-127 VFs, so we ask the kernel to skip VF statistics (RTEXT_FILTER_SKIP_STATS)
and receive into a buffer sized for the largest PF (256 VFs).
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

from sriovkit.netlink.model import LinkState, VfSettings, VlanProto

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


def vf_list_message_bytes(num_vfs: int) -> int:
    """Upper bound on the size of one PF's RTM_NEWLINK with its VF list, stats skipped."""
    return LINK_MESSAGE_OVERHEAD + num_vfs * VF_INFO_BYTES


def receive_buffer_bytes(num_vfs: int = MAX_VFS) -> int:
    """A socket receive buffer that holds a few such messages without drops."""
    return max(1 << 20, 4 * vf_list_message_bytes(num_vfs))


def decode_vf_list(msg: Any) -> list[VfSettings]:
    """All VFs of one PF from a decoded pyroute2 ifinfmsg, ordered by index."""
    vflist = msg.get_attr("IFLA_VFINFO_LIST")
    if vflist is None:
        return []
    result = [decode_vf(info) for info in vflist.get_attrs("IFLA_VF_INFO")]
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


def decode_vf(info: Any) -> VfSettings:
    mac = info.get_attr("IFLA_VF_MAC")
    fields: _VfFields = {"vf_index": mac["vf"], "mac": mac["mac"]}
    vlan = info.get_attr("IFLA_VF_VLAN")
    if vlan is not None:
        fields["vlan"], fields["qos"] = vlan["vlan"], vlan["qos"]
    vlist = info.get_attr("IFLA_VF_VLAN_LIST")
    if vlist is not None:
        entries = vlist.get_attrs("IFLA_VF_VLAN_INFO")
        if entries and entries[0]["proto"] in iter(VlanProto):
            fields["vlan_proto"] = VlanProto(entries[0]["proto"])
    _read_flags(info, fields)
    rate = info.get_attr("IFLA_VF_RATE")
    if rate is not None:
        fields["min_tx_rate"], fields["max_tx_rate"] = rate["min_tx_rate"], rate["max_tx_rate"]
    return VfSettings(**fields)


def _read_flags(info: Any, out: _VfFlags) -> None:
    """The on/off settings into `out`."""
    # Drivers that lack a knob report it as -1 (0xffffffff): keep the default then.
    spoof = info.get_attr("IFLA_VF_SPOOFCHK")
    if spoof is not None and spoof["spoofchk"] in (0, 1):
        out["spoofchk"] = bool(spoof["spoofchk"])
    trust = info.get_attr("IFLA_VF_TRUST")
    if trust is not None and trust["trust"] in (0, 1):
        out["trust"] = bool(trust["trust"])
    state = info.get_attr("IFLA_VF_LINK_STATE")
    if state is not None and state["link_state"] in iter(LinkState):
        out["link_state"] = LinkState(state["link_state"])
