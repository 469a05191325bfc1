"""The PF-side settings of one VF: which the config asks for, and putting them back.

Each setting is a name, a way to apply the configured value and a way to
restore the snapshot's value; ADD records the names it changed so DEL restores
exactly those (restoring a setting the NIC refuses, like `link_state` on a NIC
without it, would fail a DEL that has nothing to undo there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sriovkit.cni.netconf import NetConf
from sriovkit.cni.state import VfSettingsRecord
from sriovkit.netlink.model import LinkState, VfSettings, VlanProto
from sriovkit.netlink.port import Netlink

# the VfSettings fields each setting key covers
FIELDS_OF = {"vlan": ("vlan", "qos", "vlan_proto"), "mac": ("mac",), "rate": ("min_tx_rate", "max_tx_rate"),
             "spoofchk": ("spoofchk",), "trust": ("trust",), "link_state": ("link_state",)}


@dataclass(frozen=True, slots=True)
class VfSetting:
    name: str  # what logs and errors call it: "vlan 100 qos 0 proto 802.1q"
    key: str  # what the record stores: "vlan"
    apply: Callable[[Netlink, str, int], None]


def wanted_settings(conf: NetConf, original: VfSettings) -> list[VfSetting]:
    """The settings `conf` changes, in the order upstream applies them."""
    out: list[VfSetting] = []
    if conf.vlan is not None:
        vlan, qos, proto = conf.vlan, conf.vlan_qos or 0, conf.vlan_proto or VlanProto.DOT1Q
        out.append(VfSetting(f"vlan {vlan} qos {qos} proto {_proto_name(proto)}", "vlan",
                             lambda nl, pf, i: nl.set_vf_vlan(pf, i, vlan, qos, proto)))
    if conf.mac is not None:
        mac = conf.mac
        out.append(VfSetting(f"vf mac {mac}", "mac", lambda nl, pf, i: nl.set_vf_mac(pf, i, mac)))
    if conf.max_tx_rate is not None or conf.min_tx_rate is not None:
        lo = conf.min_tx_rate if conf.min_tx_rate is not None else original.min_tx_rate
        hi = conf.max_tx_rate if conf.max_tx_rate is not None else original.max_tx_rate
        out.append(VfSetting(f"min_tx_rate {lo} max_tx_rate {hi}", "rate",
                             lambda nl, pf, i: nl.set_vf_rate(pf, i, lo, hi)))
    if conf.spoofchk is not None:
        on = conf.spoofchk
        out.append(VfSetting(f"spoofchk {_onoff(on)}", "spoofchk", lambda nl, pf, i: nl.set_vf_spoofchk(pf, i, on)))
    if conf.trust is not None:
        trust = conf.trust
        out.append(VfSetting(f"trust {_onoff(trust)}", "trust", lambda nl, pf, i: nl.set_vf_trust(pf, i, trust)))
    if conf.link_state is not None:
        state = conf.link_state
        out.append(VfSetting(f"link_state {state.name.lower()}", "link_state",
                             lambda nl, pf, i: nl.set_vf_link_state(pf, i, state)))
    return out


def restore_setting(netlink: Netlink, pf: str, vf_index: int, key: str, original: VfSettings) -> None:
    """Put one setting back to the snapshot's value."""
    o = original
    if key == "vlan":
        netlink.set_vf_vlan(pf, vf_index, o.vlan, o.qos, o.vlan_proto)
    elif key == "mac":
        netlink.set_vf_mac(pf, vf_index, o.mac)
    elif key == "rate":
        netlink.set_vf_rate(pf, vf_index, o.min_tx_rate, o.max_tx_rate)
    elif key == "spoofchk":
        netlink.set_vf_spoofchk(pf, vf_index, o.spoofchk)
    elif key == "trust":
        netlink.set_vf_trust(pf, vf_index, o.trust)
    elif key == "link_state":
        netlink.set_vf_link_state(pf, vf_index, o.link_state)
    else:
        raise ValueError(f"unknown VF setting {key!r} in state record")


def describe_restore(key: str, original: VfSettings) -> str:
    o = original
    return {
        "vlan": f"vlan {o.vlan} qos {o.qos} proto {_proto_name(o.vlan_proto)}",
        "mac": f"vf mac {o.mac}",
        "rate": f"min_tx_rate {o.min_tx_rate} max_tx_rate {o.max_tx_rate}",
        "spoofchk": f"spoofchk {_onoff(o.spoofchk)}",
        "trust": f"trust {_onoff(o.trust)}",
        "link_state": f"link_state {o.link_state.name.lower()}",
    }.get(key, key)


def settings_to_dict(settings: VfSettings) -> VfSettingsRecord:
    return VfSettingsRecord(vf_index=settings.vf_index, mac=settings.mac, vlan=settings.vlan, qos=settings.qos,
                            vlan_proto=int(settings.vlan_proto), spoofchk=settings.spoofchk, trust=settings.trust,
                            link_state=int(settings.link_state), min_tx_rate=settings.min_tx_rate,
                            max_tx_rate=settings.max_tx_rate)


def settings_from_dict(data: VfSettingsRecord) -> VfSettings:
    values: dict[str, Any] = dict(data)
    values["vlan_proto"] = VlanProto(values.get("vlan_proto", VlanProto.DOT1Q))
    values["link_state"] = LinkState(values.get("link_state", LinkState.AUTO))
    return VfSettings(**values)


def mismatches(conf: NetConf, actual: VfSettings) -> list[str]:
    """CHECK: the configured values the switch no longer holds."""
    out = []
    if conf.vlan is not None and (actual.vlan, actual.qos) != (conf.vlan, conf.vlan_qos or 0):
        out.append(f"vlan is {actual.vlan} qos {actual.qos}, config says {conf.vlan} qos {conf.vlan_qos or 0}")
    if conf.mac is not None and actual.mac.lower() != conf.mac:
        out.append(f"vf mac is {actual.mac}, config says {conf.mac}")
    if conf.spoofchk is not None and actual.spoofchk != conf.spoofchk:
        out.append(f"spoofchk is {_onoff(actual.spoofchk)}, config says {_onoff(conf.spoofchk)}")
    if conf.trust is not None and actual.trust != conf.trust:
        out.append(f"trust is {_onoff(actual.trust)}, config says {_onoff(conf.trust)}")
    if conf.link_state is not None and actual.link_state != conf.link_state:
        out.append(f"link_state is {actual.link_state.name.lower()}, config says {conf.link_state.name.lower()}")
    if conf.max_tx_rate is not None and actual.max_tx_rate != conf.max_tx_rate:
        out.append(f"max_tx_rate is {actual.max_tx_rate}, config says {conf.max_tx_rate}")
    if conf.min_tx_rate is not None and actual.min_tx_rate != conf.min_tx_rate:
        out.append(f"min_tx_rate is {actual.min_tx_rate}, config says {conf.min_tx_rate}")
    return out


def _proto_name(proto: VlanProto) -> str:
    return "802.1ad" if proto is VlanProto.DOT1AD else "802.1q"


def _onoff(value: bool) -> str:
    return "on" if value else "off"
