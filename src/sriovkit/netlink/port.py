"""The `Netlink` port: every change the CNI makes to links and VFs goes through it.

`KernelNetlink` (pyroute2) serves it on the real kernel; the entry points'
composition roots (`sriovkit.commands.ports`) choose the implementation and
hand it in. A namespace is named by its path (for example
``/var/run/netns/cni-...``); ``None`` is the caller's own namespace (the
host's). Failures raise the typed errors of `sriovkit.netlink.errors`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from sriovkit.netlink.model import LinkInfo, LinkState, RouteInfo, VfSettings, VlanProto


class Netlink(Protocol):
    # -- the PF's embedded switch, one VF at a time ------------------------------
    def vf_settings(self, pf: str, vf_index: int) -> VfSettings: ...

    def all_vf_settings(self, pf: str) -> list[VfSettings]: ...

    def set_vf_mac(self, pf: str, vf_index: int, mac: str) -> None: ...

    def set_vf_vlan(self, pf: str, vf_index: int, vlan: int, qos: int, proto: VlanProto) -> None: ...

    def set_vf_spoofchk(self, pf: str, vf_index: int, enabled: bool) -> None: ...

    def set_vf_trust(self, pf: str, vf_index: int, enabled: bool) -> None: ...

    def set_vf_link_state(self, pf: str, vf_index: int, state: LinkState) -> None: ...

    def set_vf_rate(self, pf: str, vf_index: int, min_tx_rate: int, max_tx_rate: int) -> None: ...

    # -- links ----------------------------------------------------------------------
    def find_link(self, name: str, netns: str | None = None) -> LinkInfo | None: ...

    def links(self, netns: str | None = None) -> list[LinkInfo]:
        """Every interface of the namespace (find one by alias or MAC with the helpers below)."""
        ...

    def move_link(self, name: str, *, src_netns: str | None, dst_netns: str | None, new_name: str,
                  index: int | None = None) -> None:
        """Move and rename in one request, so the name never exists twice anywhere. With `index`,
        the link moved is the one with that ifindex (`name` only names it in messages): a link
        identified by `device_links` cannot be swapped for another by a rename in between."""
        ...

    def rename_link(self, name: str, new_name: str, netns: str | None = None) -> None:
        """Rename (the link is set down first: the kernel refuses to rename a running link)."""
        ...

    def set_link_mac(self, name: str, mac: str, netns: str | None = None) -> None: ...

    def set_link_mtu(self, name: str, mtu: int, netns: str | None = None) -> None: ...

    def set_link_up(self, name: str, up: bool, netns: str | None = None) -> None: ...

    def set_link_alias(self, name: str, alias: str, netns: str | None = None) -> None:
        """Set IFLA_IFALIAS; an empty alias clears it."""
        ...

    def add_address(self, name: str, cidr: str, netns: str | None = None) -> None: ...

    def delete_address(self, name: str, cidr: str, netns: str | None = None) -> None: ...

    def addresses(self, name: str, netns: str | None = None) -> list[str]:
        """CIDRs ("10.1.2.3/24", "fd00::3/64") on the link, IPv6 link-local included."""
        ...

    def add_route(self, dst: str, gateway: str | None, name: str, netns: str | None = None) -> None: ...

    def routes(self, name: str, netns: str | None = None) -> list[RouteInfo]:
        """Routes of the main table whose output interface is `name` (both families)."""
        ...

    # -- which interface a PCI function has in the host namespace -------------------
    def device_netdev(self, pci_address: str) -> str | None: ...

    def operation(self) -> AbstractContextManager[None]:
        """Around one CNI operation: sockets into a pod's namespace are kept for its duration."""
        ...

    def await_link_changes(self, timeout_s: float) -> None:
        """Let up to `timeout_s` pass for links to change on their own (a VF coming back from a
        namespace being torn down): a caller waiting for such a change asks its queries again
        after each wait."""
        ...

    def device_links(self, pci_address: str, netns: str | None = None) -> list[LinkInfo]:
        """The interfaces in `netns` that the kernel says belong to PCI function `pci_address`,
        whatever they are named now: on a real node their parent device (IFLA_PARENT_DEV_NAME on
        bus "pci", the netdev's sysfs `device` link); elsewhere whatever identity the implementation
        keeps out of pods' reach. Nothing a process inside `netns` can set makes another link match."""
        ...

    def close(self) -> None: ...


def link_by_alias(netlink: Netlink, alias: str, netns: str | None = None) -> LinkInfo | None:
    """The link carrying `alias` in `netns`, if any."""
    return next((link for link in netlink.links(netns) if link.alias == alias), None)


def link_by_mac(netlink: Netlink, mac: str, netns: str | None = None) -> LinkInfo | None:
    """The first link with MAC `mac` (case-insensitive) in `netns`, if any."""
    wanted = mac.lower()
    return next((link for link in netlink.links(netns) if link.mac.lower() == wanted), None)
