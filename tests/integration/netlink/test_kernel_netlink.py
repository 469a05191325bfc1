"""KernelNetlink on the real kernel: veth pairs and network namespaces (root)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.errors import (
    InvalidValueError,
    LinkNotFoundError,
    NameInUseError,
    NamespaceError,
    NotSupportedError,
)
from sriovkit.netlink.kernel import KernelNetlink
from sriovkit.netlink.model import RouteInfo
from sriovkit.netlink.port import link_by_alias, link_by_mac
from tests.support.kernel import ip_json
from tests.support.kernel import veth_pair as make_veth_pair
from tests.support.names import NetnsFactory, unique_name

pytestmark = pytest.mark.root

SRC = Path(__file__).resolve().parents[3] / "src"


@pytest.fixture
def kernel() -> Iterator[KernelNetlink]:
    nl = KernelNetlink(Sysfs())
    yield nl
    nl.close()


def test_move_into_netns_with_rename_and_back_under_the_original_name(
    kernel: KernelNetlink, veth: str, netns: NetnsFactory
) -> None:
    pod = netns()
    kernel.move_link(veth, src_netns=None, dst_netns=pod, new_name="net1")
    assert kernel.find_link(veth) is None
    assert [link["ifname"] for link in ip_json("link", "show", "net1", netns=pod)] == ["net1"]

    kernel.move_link("net1", src_netns=pod, dst_netns=None, new_name=veth)
    assert kernel.find_link("net1", pod) is None
    assert ip_json("link", "show", veth)[0]["ifname"] == veth


def test_moves_asked_from_several_threads_reach_the_kernel_one_at_a_time(
    kernel: KernelNetlink, netns: NetnsFactory
) -> None:
    # each move request is held 20 ms on its way, so any two asked at once would overlap there
    in_flight, peak, count_lock = 0, 0, threading.Lock()
    send = kernel._change

    def counted(what: str, *args: Any, **kwargs: Any) -> None:
        nonlocal in_flight, peak
        if not what.startswith("move "):
            return send(what, *args, **kwargs)
        with count_lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            time.sleep(0.02)
            return send(what, *args, **kwargs)
        finally:
            with count_lock:
                in_flight -= 1

    kernel._change = counted  # type: ignore[method-assign]
    with contextlib.ExitStack() as stack:
        pairs = [stack.enter_context(make_veth_pair()) for _ in range(4)]
        pods = [netns() for _ in pairs]
        start = threading.Barrier(len(pairs))
        failures: list[BaseException] = []

        def move(name: str, pod: str) -> None:
            start.wait()
            try:
                kernel.move_link(name, src_netns=None, dst_netns=pod, new_name="net1")
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=move, args=(pair.name, pod)) for pair, pod in zip(pairs, pods, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert peak == 1
        for pair, pod in zip(pairs, pods, strict=True):
            assert kernel.find_link(pair.name) is None
            assert kernel.find_link("net1", pod) is not None


def test_mac_mtu_up_and_rename_inside_a_netns(kernel: KernelNetlink, veth: str, netns: NetnsFactory) -> None:
    pod = netns()
    kernel.move_link(veth, src_netns=None, dst_netns=pod, new_name="tmp0")
    kernel.rename_link("tmp0", "eth7", pod)
    kernel.set_link_mac("eth7", "02:11:22:33:44:55", pod)
    kernel.set_link_mtu("eth7", 1400, pod)
    kernel.set_link_up("eth7", True, pod)

    shown = ip_json("link", "show", "eth7", netns=pod)[0]
    assert (shown["address"], shown["mtu"], "UP" in shown["flags"]) == ("02:11:22:33:44:55", 1400, True)
    info = kernel.find_link("eth7", pod)
    assert info is not None
    assert (info.mac, info.mtu, info.up) == ("02:11:22:33:44:55", 1400, True)
    assert info.operstate != "up"  # its peer in the host is down
    assert info.link_index is not None


def test_addresses_and_routes_in_a_netns(kernel: KernelNetlink, veth: str, netns: NetnsFactory) -> None:
    pod = netns()
    kernel.move_link(veth, src_netns=None, dst_netns=pod, new_name="net1")
    kernel.set_link_up("net1", True, pod)
    kernel.add_address("net1", "10.77.0.5/24", pod)
    kernel.add_address("net1", "fd00:77::5/64", pod)
    kernel.add_route("0.0.0.0/0", "10.77.0.1", "net1", pod)
    kernel.add_route("10.88.0.0/16", None, "net1", pod)

    assert {"10.77.0.5/24", "fd00:77::5/64"} <= set(kernel.addresses("net1", pod))
    kernel_view = {(a["local"], a["prefixlen"]) for a in ip_json("addr", "show", "net1", netns=pod)[0]["addr_info"]}
    assert {("10.77.0.5", 24), ("fd00:77::5", 64)} <= kernel_view
    routes = kernel.routes("net1", pod)
    assert RouteInfo("0.0.0.0/0", "10.77.0.1") in routes
    assert RouteInfo("10.88.0.0/16", None) in routes
    assert RouteInfo("10.77.0.0/24", None) in routes
    assert [r["gateway"] for r in ip_json("route", "show", "default", netns=pod)] == ["10.77.0.1"]

    kernel.delete_address("net1", "10.77.0.5/24", pod)
    assert "10.77.0.5/24" not in kernel.addresses("net1", pod)
    assert all(not r.dst.startswith("10.") for r in kernel.routes("net1", pod))  # they went with the address


def test_alias_and_lookup_by_alias_or_mac(kernel: KernelNetlink, veth: str, netns: NetnsFactory) -> None:
    pod = netns()
    kernel.move_link(veth, src_netns=None, dst_netns=pod, new_name="net1")
    kernel.set_link_alias("net1", veth, pod)
    kernel.set_link_mac("net1", "02:aa:bb:cc:dd:01", pod)

    assert ip_json("link", "show", "net1", netns=pod)[0]["ifalias"] == veth
    by_alias = link_by_alias(kernel, veth, pod)
    by_mac = link_by_mac(kernel, "02:AA:BB:CC:DD:01", pod)
    assert by_alias is not None and by_mac is not None
    assert by_alias.name == by_mac.name == "net1"
    assert link_by_alias(kernel, veth) is None  # not in the host netns

    kernel.set_link_alias("net1", "", pod)
    info = kernel.find_link("net1", pod)
    assert info is not None and info.alias is None


def test_typed_errors(kernel: KernelNetlink, veth: str, netns: NetnsFactory) -> None:
    pod = netns()
    missing = unique_name("skm")
    assert kernel.find_link(missing) is None
    with pytest.raises(LinkNotFoundError):
        kernel.move_link(missing, src_netns=None, dst_netns=pod, new_name="net1")
    with pytest.raises(NameInUseError):
        kernel.rename_link(veth, "lo")
    with pytest.raises(NamespaceError):
        kernel.move_link(veth, src_netns=None, dst_netns=f"{pod}-gone", new_name="net1")
    with pytest.raises(NamespaceError):
        kernel.links(f"{pod}-gone")
    assert kernel.find_link(veth) is not None  # nothing moved


def test_an_operation_looks_its_pf_up_once_and_keeps_to_that_device(kernel: KernelNetlink, veth: str) -> None:
    """Within one operation (a CNI call) the PF's VF settings go to the device its name had at
    the first request, by index: one lookup for all of them, and a rename meanwhile changes
    nothing. A veth has no VFs, so each setting is refused by the device itself, not for want
    of a device; outside an operation each request looks the name up again."""
    renamed = unique_name("skr")
    with kernel.operation():
        with pytest.raises(NotSupportedError):
            kernel.set_vf_spoofchk(veth, 0, False)
        kernel.rename_link(veth, renamed)
        try:
            with pytest.raises(NotSupportedError):
                kernel.set_vf_trust(veth, 0, True)
        finally:
            kernel.rename_link(renamed, veth)
    kernel.rename_link(veth, renamed)
    try:
        with pytest.raises(LinkNotFoundError):
            kernel.set_vf_trust(veth, 0, True)
    finally:
        kernel.rename_link(renamed, veth)


def test_move_into_a_netns_where_the_name_is_taken_leaves_the_link_in_place(
    kernel: KernelNetlink, veth: str, netns: NetnsFactory
) -> None:
    pod = netns()
    kernel.move_link(veth, src_netns=None, dst_netns=pod, new_name="net1")
    other, other_peer = unique_name("skt"), unique_name("skp")
    with IPRoute() as ipr:
        ipr.link("add", ifname=other, kind="veth", peer={"ifname": other_peer})
    try:
        with pytest.raises(NameInUseError):
            kernel.move_link(other, src_netns=None, dst_netns=pod, new_name="net1")
        assert kernel.find_link(other) is not None
    finally:
        with IPRoute() as ipr:
            ipr.link("del", index=ipr.link_lookup(ifname=other_peer)[0])


def test_a_rename_refused_after_the_move_is_undone(kernel: KernelNetlink, veth: str, netns: NetnsFactory) -> None:
    """The kernel moves before it renames; an invalid new name must not leave the link in the pod."""
    pod = netns()
    with pytest.raises(InvalidValueError):
        kernel.move_link(veth, src_netns=None, dst_netns=pod, new_name="bad/name")
    assert kernel.find_link(veth) is not None
    assert [link.name for link in kernel.links(pod)] == ["lo"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch the system calls")
def test_names_are_looked_up_by_netlink_never_by_the_ioctl_that_loads_modules(
        veth: str, netns: NetnsFactory, tmp_path: Path) -> None:
    """A SIOCGIFINDEX (or any name ioctl the kernel answers through dev_load) for a name that is
    absent makes the kernel run modprobe "netdev-NAME" and wait for it: 0.5-0.8 s per miss in the
    VM lab, on every ADD and DEL (the new name's check, the old name's). Moves, renames and
    lookups of present and absent names ask netlink only."""
    pod, trace = netns(), tmp_path / "trace"
    program = (
        "import sys\nfrom sriovkit.host.sysfs import Sysfs\nfrom sriovkit.netlink.kernel import KernelNetlink\n"
        "veth, pod = sys.argv[1], sys.argv[2]\nnl = KernelNetlink(Sysfs())\n"
        "assert nl.find_link('sknosuch0') is None and nl.find_link('sknosuch0', pod) is None\n"
        "nl.move_link(veth, src_netns=None, dst_netns=pod, new_name='net1')\n"
        "nl.rename_link('net1', 'net2', pod)\n"
        "nl.move_link('net2', src_netns=pod, dst_netns=None, new_name=veth)\n"
        "assert nl.find_link(veth) is not None\nnl.close()\n")
    subprocess.run(["strace", "-f", "-o", str(trace), "-e", "trace=ioctl", sys.executable, "-c", program, veth, pod],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    named = [line for line in trace.read_text().splitlines() if re.search(r"ioctl\(\d+, SIOC(GIF|SIF|ETHTOOL)", line)]
    assert named == []
    assert ip_json("link", "show", veth)[0]["ifname"] == veth
