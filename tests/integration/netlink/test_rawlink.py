"""The agent's plain link reads (sriovkit.netlink.rawlink) against pyroute2's full decoding of
the same kernel answers: every attribute the port reads, for every kind of link the node and
the simulator have (veth ends in two namespaces, a bridge and its port, a link with an alias,
a group, an MTU and a MAC set), a dump spanning many datagrams, the netns ids, and the answers
for links that do not exist (root)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pyroute2 import NetNS

from sriovkit.netlink.kernel import _link_info
from sriovkit.netlink.rawlink import _LINK_ATTRS, LinkMessage, LinkQuery, open_query
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root

ATTRS = [name for name, _ in _LINK_ATTRS.values()]


@pytest.fixture
def two_namespaces(netns: NetnsFactory) -> Iterator[tuple[str, str, NetNS]]:
    """Namespace A with: a bridge, a veth whose peer is in namespace B and which is the bridge's
    port, and a bridge d0 with alias, group, MTU and MAC set (this kernel has no dummy links)."""
    a, b = netns(), netns()
    ipr = NetNS(os.path.basename(a))
    try:
        ipr.link("add", ifname="br0", kind="bridge")
        ipr.link("add", ifname="v0", kind="veth", peer={"ifname": "v1"})
        peer = ipr.link_lookup(ifname="v1")[0]
        fd = os.open(b, os.O_RDONLY)
        try:
            ipr.link("set", index=peer, net_ns_fd=fd)
        finally:
            os.close(fd)
        ipr.link("set", index=ipr.link_lookup(ifname="v0")[0], master=ipr.link_lookup(ifname="br0")[0])
        ipr.link("add", ifname="d0", kind="bridge")
        d0 = ipr.link_lookup(ifname="d0")[0]
        ipr.link("set", index=d0, ifalias="a pod's alias", group=7, mtu=1400, address="02:11:22:33:44:55")
        # (left down: an up bridge's carrier and operstate settle on their own, between two reads)
        yield a, b, ipr
    finally:
        ipr.close()


def pyroute2_view(msg: object) -> dict[str, object]:
    get = msg.get_attr  # type: ignore[attr-defined]
    info = get("IFLA_LINKINFO")
    view: dict[str, object] = {name: get(name) for name in ATTRS}
    view["kind"] = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    view["index"], view["flags"] = msg["index"], msg["flags"]  # type: ignore[index]
    view["IFLA_OPERSTATE"] = None  # pyroute2 names it, rawlink keeps the number: compared as the port reads it
    view["link_info"] = _link_info(msg)
    return view


def raw_view(msg: LinkMessage) -> dict[str, object]:
    view: dict[str, object] = {name: msg.get_attr(name) for name in ATTRS}
    info = msg.get_attr("IFLA_LINKINFO")
    view["kind"] = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    view["index"], view["flags"] = msg["index"], msg["flags"]
    view["IFLA_OPERSTATE"] = None
    view["link_info"] = _link_info(msg)
    return view


def test_every_attribute_read_agrees_with_pyroute2(two_namespaces: tuple[str, str, NetNS]) -> None:
    a, _, ipr = two_namespaces
    expected = {m.get_attr("IFLA_IFNAME"): pyroute2_view(m) for m in ipr.get_links()}
    query = open_query(a)
    try:
        dumped = {m.get_attr("IFLA_IFNAME"): raw_view(m) for m in query.dump()}
        assert dumped == expected
        for name, view in expected.items():
            by_name, by_index = query.get(name=str(name)), query.get(index=int(view["index"]))  # type: ignore[call-overload]
            assert by_name is not None and by_index is not None
            assert raw_view(by_name) == view == raw_view(by_index)
    finally:
        query.close()
    # what the identity checks rely on, spelled out: the veth's peer is across namespaces
    v0 = expected["v0"]
    assert v0["kind"] == "veth" and isinstance(v0["IFLA_LINK_NETNSID"], int)
    assert v0["IFLA_MASTER"] == expected["br0"]["index"]
    d0 = expected["d0"]
    assert (d0["IFLA_IFALIAS"], d0["IFLA_GROUP"], d0["IFLA_MTU"], d0["IFLA_ADDRESS"]) == (
        "a pod's alias", 7, 1400, "02:11:22:33:44:55")


def test_netns_id_agrees_with_pyroute2_and_with_the_veths_link_netnsid(two_namespaces: tuple[str, str, NetNS]) -> None:
    a, b, ipr = two_namespaces
    query = open_query(a)
    fd = os.open(b, os.O_RDONLY)
    try:
        nsid = query.netnsid(fd)
        assert nsid is not None and nsid == ipr.get_netnsid(fd=fd)["nsid"]
        v0 = query.get(name="v0")
        assert v0 is not None and v0.get_attr("IFLA_LINK_NETNSID") == nsid
    finally:
        os.close(fd)
        query.close()


def test_links_that_do_not_exist_are_none(two_namespaces: tuple[str, str, NetNS]) -> None:
    a, _, _ = two_namespaces
    query = open_query(a)
    try:
        assert query.get(name="nosuchlink") is None
        assert query.get(name="x" * 40) is None  # longer than IFNAMSIZ
        assert query.get(name="x" * 16) is None  # IFNAMSIZ with its NUL
        assert query.get(name="v\0") is None
        assert query.get(index=2**31 - 1) is None
        assert query.get(name="") is None
        assert query.get(name="v1") is None  # in the other namespace
    finally:
        query.close()


def test_a_dump_spanning_many_datagrams_lists_every_link(netns: NetnsFactory) -> None:
    ns = netns()
    ipr = NetNS(os.path.basename(ns))
    try:
        for n in range(150):
            ipr.link("add", ifname=f"rl{n}a", kind="veth", peer={"ifname": f"rl{n}b"})
        expected = sorted(m.get_attr("IFLA_IFNAME") for m in ipr.get_links())
    finally:
        ipr.close()
    query = open_query(ns)
    try:
        got = sorted(m.get_attr("IFLA_IFNAME") for m in query.dump())
        again = sorted(m.get_attr("IFLA_IFNAME") for m in query.dump())  # the socket is reusable after a dump
    finally:
        query.close()
    assert got == expected == again and len(got) == 301  # and lo


def test_a_host_query_in_the_callers_namespace_sees_lo() -> None:
    query = LinkQuery()
    try:
        lo = query.get(name="lo")
        assert lo is not None and lo["index"] == 1
    finally:
        query.close()
