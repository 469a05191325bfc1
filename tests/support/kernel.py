"""The tests' own view of the kernel: `ip -j` as an observer independent of the product's
pyroute2 code, veth pairs made through pyroute2, and a umask for the length of a block."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any, NamedTuple

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from tests.support.names import unique_name


def ip(*args: str, netns: str | None = None) -> None:
    """Run `ip [-n NETNS] ARGS` (a pod's own doing, or the test's), failing on error."""
    subprocess.run(["ip", *_in(netns), *args], check=True, capture_output=True)


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    """What `ip -j [-n NETNS] ARGS` reports (netns: a name or a /var/run/netns path)."""
    out = subprocess.run(["ip", "-j", *_in(netns), *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def _in(netns: str | None) -> list[str]:
    return ["-n", os.path.basename(netns)] if netns else []


def pod_link(netns: str, name: str) -> dict[str, Any] | None:
    """`ip -j addr show` of one interface in `netns`, or None."""
    links = [x for x in ip_json("addr", "show", netns=netns) if x["ifname"] == name]
    return links[0] if links else None


def pod_addresses(netns: str, name: str) -> set[str]:
    """The global addresses (CIDR) of one interface in `netns`."""
    link = pod_link(netns, name)
    return {f"{a['local']}/{a['prefixlen']}" for a in (link or {}).get("addr_info", []) if a.get("scope") == "global"}


def ipv4_by_interface(netns: str) -> dict[str, list[str]]:
    """interface -> its global IPv4 addresses, as the kernel reports them in `netns`."""
    return {link["ifname"]: [a["local"] for a in link.get("addr_info", []) if a.get("scope") == "global"]
            for link in ip_json("-4", "addr", "show", netns=netns)}


class VethPair(NamedTuple):
    name: str  # the end under test
    peer: str


@contextlib.contextmanager
def veth_pair(prefix: str = "skv") -> Iterator[VethPair]:
    """A veth pair in the host netns (random names, created down), deleted on exit through its
    peer, wherever the end under test went; already gone is fine (its namespace may have gone)."""
    pair = VethPair(unique_name(prefix), unique_name("skp"))
    with IPRoute() as ipr:
        ipr.link("add", ifname=pair.name, kind="veth", peer={"ifname": pair.peer})
    try:
        yield pair
    finally:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=pair.peer)
            if found:
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=found[0])


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    """The process's umask is `value` inside the block (what the product creates must not depend on it)."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)
