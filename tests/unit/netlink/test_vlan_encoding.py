"""VF VLAN requests as the kernel parses them (found on a real igb PF: every VLAN was refused)."""

from __future__ import annotations

import struct

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from sriovkit.netlink.kernel import pad_vlan_info, vf_vlan_spec
from sriovkit.netlink.model import VlanProto

IFLA_VF_VLAN_INFO = 1
KERNEL_IFLA_VF_VLAN_INFO_SIZE = 16  # struct ifla_vf_vlan_info {u32 vf, vlan, qos; be16 proto} + padding


def _vlan_info_attr_length() -> int:
    msg = ifinfmsg()
    msg["index"] = 1
    info = {"vf": 0, "vlan": 100, "qos": 3, "proto": int(VlanProto.DOT1AD)}
    msg["attrs"] = [("IFLA_VFINFO_LIST", {"attrs": [("IFLA_VF_INFO", {"attrs": [
        ("IFLA_VF_VLAN_LIST", {"attrs": [("IFLA_VF_VLAN_INFO", info)]})]})]})]
    msg.encode()
    data = bytes(msg.data)
    at = data.index(struct.pack("=III", 0, 100, 3)) - 4  # the nla header before vf, vlan, qos
    length, kind = struct.unpack_from("=HH", data, at)
    assert kind == IFLA_VF_VLAN_INFO
    return length - 4


def test_802_1q_uses_the_plain_vlan_attribute() -> None:
    assert vf_vlan_spec(3, 100, 5, VlanProto.DOT1Q) == {"vf": 3, "vlan": {"vlan": 100, "qos": 5}}


def test_802_1ad_vlan_info_is_as_long_as_the_kernel_struct() -> None:
    spec = vf_vlan_spec(3, 100, 5, VlanProto.DOT1AD)
    assert spec == {"vf": 3, "vlan": [{"vlan": 100, "qos": 5, "proto": 0x88A8}]}
    assert _vlan_info_attr_length() == KERNEL_IFLA_VF_VLAN_INFO_SIZE
    pad_vlan_info()  # idempotent
    assert _vlan_info_attr_length() == KERNEL_IFLA_VF_VLAN_INFO_SIZE
