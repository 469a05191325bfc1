"""Sockets in pods' namespaces (sriovkit.netlink.netns): made by a thread inside the namespace;
within `sockets_kept()` one such thread per namespace for the whole block (root)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from pyroute2 import NetNS

from sriovkit.netlink import netns as ns
from sriovkit.netlink.errors import NamespaceError
from sriovkit.netlink.rawlink import LinkQuery
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


def make_link(netns_path: str, name: str) -> None:
    with NetNS(os.path.basename(netns_path)) as ipr:
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})


def sees(sock: socket.socket, name: str) -> bool:
    """Whether a netlink socket's namespace has link `name` (the socket is closed)."""
    query = LinkQuery(sock)
    try:
        return query.get(name=name) is not None
    finally:
        query.close()


def netns_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sriovkit-netns"]


def netlink_socket(path: str) -> socket.socket:
    return ns.socket_in_netns(path, socket.AF_NETLINK, socket.SOCK_RAW, 0)


def test_one_thread_per_namespace_makes_every_socket_of_a_block(netns: NetnsFactory,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = netns(), netns()
    make_link(a, "ina")
    make_link(b, "inb")
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    with ns.sockets_kept():
        first, second = netlink_socket(a), netlink_socket(a)
        other = netlink_socket(b)
        packet = ns.socket_in_netns(a, socket.AF_PACKET, socket.SOCK_RAW, 0)
        packet.close()
        with ns.sockets_kept():  # nested: the outer block's threads
            third = netlink_socket(a)
        assert len(netns_threads()) == 2
    assert started.count("sriovkit-netns") == 2  # a and b, whatever the number of sockets
    assert netns_threads() == []  # ended with the block
    assert sees(first, "ina") and sees(second, "ina") and sees(third, "ina")
    assert sees(other, "inb")
    assert sees(netlink_socket(None), "lo") and not sees(netlink_socket(None), "ina")


def test_the_namespace_is_opened_once_per_block_whatever_the_path_becomes(netns: NetnsFactory,
                                                                          tmp_path: Path) -> None:
    a, b = netns(), netns()
    make_link(a, "ina")
    make_link(b, "inb")
    path = tmp_path / "pod-netns"
    path.symlink_to(a)
    with ns.sockets_kept():
        before = netlink_socket(str(path))
        path.unlink()
        path.symlink_to(b)  # the runtime's path now names another namespace
        after = netlink_socket(str(path))
    assert sees(before, "ina") and sees(after, "ina")
    assert sees(netlink_socket(str(path)), "inb")  # a new block opens the path again


def test_a_namespace_that_cannot_be_entered_refuses_each_socket_and_makes_none(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone")
    not_a_netns = tmp_path / "file"
    not_a_netns.write_text("")
    with ns.sockets_kept():
        for path in (missing, missing, str(not_a_netns)):
            with pytest.raises(NamespaceError, match=path):
                netlink_socket(path)
        assert sees(netlink_socket(None), "lo")  # the caller's own namespace is untouched
    assert netns_threads() == []
    with pytest.raises(NamespaceError, match="gone"):  # and outside a block, as before
        netlink_socket(missing)
