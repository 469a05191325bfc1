"""Setting a VF interface's own MAC on PFs that would rather set it themselves.

On igb (real 82576s and QEMU's), once the PF has set a VF's MAC the VF may not change its own
unless trusted, not even to the same value (EADDRNOTAVAIL); the VF driver instead takes the PF's
MAC whenever it resets, which taking the link down does. That is the common config (`mac`
without `trust on`) at ADD, and at DEL the state after the PF-side restore. So: ask; when the VF
refuses, reset it once and accept the result if it now carries the wanted MAC.
"""

from __future__ import annotations

from sriovkit.netlink.errors import NetlinkError
from sriovkit.netlink.port import Netlink


def set_netdev_mac(nl: Netlink, name: str, mac: str, netns: str | None = None) -> None:
    """Give `name` the MAC `mac`; raises the VF's refusal if a reset does not bring it either."""
    try:
        nl.set_link_mac(name, mac, netns)
    except NetlinkError as refusal:
        cycle_link(nl, name, netns)
        link = nl.find_link(name, netns)
        if link is None or link.mac.lower() != mac.lower():
            raise refusal from None


def cycle_link(nl: Netlink, name: str, netns: str | None = None) -> None:
    """Up and down (or down and up), ending as it was: either way the VF driver resets once."""
    link = nl.find_link(name, netns)
    was_up = bool(link and link.up)
    nl.set_link_up(name, not was_up, netns)
    nl.set_link_up(name, was_up, netns)
