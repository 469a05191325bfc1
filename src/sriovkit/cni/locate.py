"""Which link is an attachment's VF: what the kernel says, never a name.

A pod with NET_ADMIN renames, deletes and creates interfaces as it likes, so the name an
attachment gave its VF (CNI_IFNAME) says nothing about which link is the VF by the time DEL,
CHECK or GC run. The VF is the link whose parent device is its PCI function (the Netlink port's
`device_links`: IFLA_PARENT_DEV_NAME or the sysfs `device` link on a real node, an identity
out of the pod's reach in any other implementation). The ifindex and permanent MAC recorded at ADD only choose
among several links of one function (IPoIB children share their parent's device); they never
make a link the VF on their own.
"""

from __future__ import annotations

from sriovkit.netlink.model import LinkInfo
from sriovkit.netlink.port import Netlink


def find_vf(nl: Netlink, pci_address: str, netns: str | None, *, ifindex: int | None = None,
            perm_mac: str | None = None) -> LinkInfo | None:
    """The function's own netdev in `netns` (None: the host's), or None if that namespace has none."""
    candidates = nl.device_links(pci_address, netns)
    if len(candidates) > 1:  # the hardware netdev itself, not a virtual link stacked on it
        candidates = [c for c in candidates if c.kind is None] or candidates
    if len(candidates) > 1 and ifindex is not None:
        candidates = [c for c in candidates if c.index == ifindex] or candidates
    if len(candidates) > 1 and perm_mac:
        candidates = [c for c in candidates if (c.perm_mac or "").lower() == perm_mac.lower()] or candidates
    return min(candidates, key=lambda c: c.index) if candidates else None
