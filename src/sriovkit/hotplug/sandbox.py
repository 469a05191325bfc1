"""The kernel's view of a pod's network namespace: which interfaces are really there."""

from __future__ import annotations

import socket

from sriovkit.netlink.netns import run_in_netns


def interfaces_in(netns: str) -> set[str]:
    """Interface names in `netns` (if_nameindex(3) on a thread inside it)."""
    return {name for _, name in run_in_netns(netns, socket.if_nameindex)}
