"""Which interfaces carry the node's default route (never offered to pods).

Read from procfs rather than netlink: it is two small files, needs no
netlink socket, and sees the netns the agent runs in, which is the host's.
"""

from __future__ import annotations

import os

_DEFAULT_V6 = "00000000000000000000000000000000"


def default_route_netdevs(proc_root: str = "/proc") -> frozenset[str]:
    """Interfaces with an IPv4 or IPv6 default route. A host root without ``proc/``
    has none, unless a test writes one."""
    return frozenset(_ipv4_defaults(proc_root) | _ipv6_defaults(proc_root))


def _ipv4_defaults(proc_root: str) -> set[str]:
    found: set[str] = set()
    for fields in _rows(os.path.join(proc_root, "net", "route"), skip_header=True):
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            found.add(fields[0])
    return found


def _ipv6_defaults(proc_root: str) -> set[str]:
    found: set[str] = set()
    for fields in _rows(os.path.join(proc_root, "net", "ipv6_route"), skip_header=False):
        # dest dest_plen src src_plen nexthop metric refcnt use flags iface
        if len(fields) >= 10 and fields[0] == _DEFAULT_V6 and fields[1] == "00" and fields[9] != "lo":
            found.add(fields[9])
    return found


def _rows(path: str, *, skip_header: bool) -> list[list[str]]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [line.split() for line in (lines[1:] if skip_header else lines)]
