"""Values that cross the Netlink port: plain, frozen, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass

ZERO_MAC = "00:00:00:00:00:00"
# A VF's VLAN: 802.1Q reserves 4095, and upstream sriov-cni accepts 0-4094 (0: no VLAN); the
# CNI's validation and every Netlink implementation use these same bounds.
MAX_VLAN = 4094
MAX_QOS = 7


class LinkState(enum.IntEnum):
    """IFLA_VF_LINK_STATE_*: the names upstream's `link_state` field uses."""

    AUTO = 0
    ENABLE = 1
    DISABLE = 2


class VlanProto(enum.IntEnum):
    """Ethertypes of VLAN protocols a VF tag may use."""

    DOT1Q = 0x8100
    DOT1AD = 0x88A8


@dataclass(frozen=True, slots=True)
class VfSettings:
    """What the PF's embedded switch holds for one VF (`ip link show <pf>` vf line)."""

    vf_index: int
    mac: str = ZERO_MAC  # the administrative MAC the PF assigned (00:..:00 = none)
    vlan: int = 0
    qos: int = 0
    vlan_proto: VlanProto = VlanProto.DOT1Q
    spoofchk: bool = True
    trust: bool = False
    link_state: LinkState = LinkState.AUTO
    min_tx_rate: int = 0  # Mbps, 0 = no limit
    max_tx_rate: int = 0


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One interface as seen in some network namespace."""

    index: int
    name: str
    mac: str
    mtu: int
    up: bool  # administratively up (IFF_UP)
    alias: str | None = None  # IFLA_IFALIAS; the CNI keeps a VF's host name here
    operstate: str = "unknown"  # IF_OPER_*, lower case: "up", "down", "lowerlayerdown" ...
    link_index: int | None = None  # IFLA_LINK: a veth's peer (index in the peer's namespace)
    perm_mac: str | None = None  # IFLA_PERM_ADDRESS, the hardware's own MAC (None: the kernel reports none)
    kind: str | None = None  # IFLA_INFO_KIND of a virtual link ("veth", "bridge"); None for hardware


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One route through an interface; `dst` is a CIDR ("0.0.0.0/0", "::/0" for default)."""

    dst: str
    gateway: str | None = None
