"""Device-plugin edges over real gRPC on unix sockets: the sockets are 0600 whatever the umask
(and never wider on the way), and Allocate / GetPreferredAllocation refuse duplicate, unknown and
oversized device IDs with INVALID_ARGUMENT and a short message, changing nothing."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sriovkit.deviceplugin.api import deviceplugin_pb2 as pb
from sriovkit.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from sriovkit.deviceplugin.requests import MAX_DEVICE_ID_BYTES
from sriovkit.deviceplugin.server import socket_name
from tests.reliability.scenarios import deviceplugin_requests
from tests.support.device_plugins import DevicePluginNode as Node
from tests.support.device_plugins import DevicePluginNodeFactory
from tests.support.kernel import umask

RESOURCE = "intel.com/net"


@pytest.fixture
def node(make_dp_node: DevicePluginNodeFactory) -> Node:
    """The device-plugin rig (this suite's `node` otherwise is the CNI host's)."""
    return make_dp_node()


@contextlib.contextmanager
def plugin(node: Node) -> Iterator[pb_grpc.DevicePluginStub]:
    manager = node.start_plugins()
    node.kubelet.wait_for_devices(RESOURCE, 2)
    # every device's device-info file is written at start, on a thread: wait for it, so a file
    # seen appearing during a refused request is the request's doing
    assert manager.device_info_prewritten(), "the start-up device-info pass did not finish"
    with grpc.insecure_channel(f"unix:{node.dp_dir / socket_name(RESOURCE)}") as channel:
        yield pb_grpc.DevicePluginStub(channel)


def refused(call: Any, request: Any) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    details = err.value.details()
    assert len(details) < 300, details
    return details


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_device_plugin_sockets_are_0600_whatever_the_umask(node: Node, mask: int) -> None:
    with umask(mask):
        node.start_plugins()
    sockets = sorted(p for p in node.dp_dir.iterdir() if p.name != "kubelet.sock" and stat.S_ISSOCK(p.lstat().st_mode))
    assert len(sockets) == 4
    assert {p.name: stat.S_IMODE(p.lstat().st_mode) for p in sockets} == {p.name: 0o600 for p in sockets}
    assert not [p for p in node.dp_dir.iterdir() if p.name.startswith(".sk")]  # no staging dir left


def test_no_moment_where_a_device_plugin_socket_is_wider_than_0600(node: Node) -> None:
    """Watch the directory while the plugins start (and restart, as after a kubelet restart)
    under umask 000: every socket file ever seen there is 0600."""
    seen: dict[str, set[int]] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(node.dp_dir):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        if stat.S_ISSOCK(st.st_mode) and entry.name != "kubelet.sock":
                            seen.setdefault(entry.name, set()).add(stat.S_IMODE(st.st_mode))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with umask(0):
            manager = node.start_plugins()
            for _ in range(5):
                for server in manager.servers.values():
                    server.restart()
    finally:
        stop.set()
        watcher.join(5)
    assert len(seen) == 4 and all(modes == {0o600} for modes in seen.values()), seen


def test_allocate_refuses_duplicates_unknown_and_oversized_ids(node: Node) -> None:
    vf0, vf1 = node.host.vf_address(0, 0), node.host.vf_address(0, 1)
    with plugin(node) as stub:
        cases = deviceplugin_requests.allocate_cases(vf0, vf1)
        for name, containers in cases.items():
            before = sorted(p.name for p in node.devinfo_dir.rglob("*")) if node.devinfo_dir.exists() else []
            details = refused(stub.Allocate, pb.AllocateRequest(container_requests=[
                pb.ContainerAllocateRequest(devices_ids=ids) for ids in containers]))
            assert "x" * 100 not in details, (name, details)
            after = sorted(p.name for p in node.devinfo_dir.rglob("*")) if node.devinfo_dir.exists() else []
            assert after == before, f"{name}: device-info files written for a refused request"
        ok = stub.Allocate(pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[vf0]),
                                                                  pb.ContainerAllocateRequest(devices_ids=[vf1])]))
        assert [r.envs["PCIDEVICE_INTEL_COM_NET"] for r in ok.container_responses] == [vf0, vf1]


def test_a_megabyte_id_gets_a_short_invalid_argument_not_a_transport_error(node: Node) -> None:
    vf0 = node.host.vf_address(0, 0)
    with plugin(node) as stub:
        for ids in (["x" * (1 << 20)], [vf0, "y" * (MAX_DEVICE_ID_BYTES + 1)]):
            details = refused(stub.Allocate, pb.AllocateRequest(container_requests=[
                pb.ContainerAllocateRequest(devices_ids=ids)]))
            assert "longer than" in details
        preferred = pb.PreferredAllocationRequest(container_requests=[pb.ContainerPreferredAllocationRequest(
            available_deviceIDs=[vf0, "z" * (1 << 20)], allocation_size=1)])
        assert "longer than" in refused(stub.GetPreferredAllocation, preferred)


def test_preferred_allocation_refuses_what_the_kubelet_cannot_have_meant(node: Node) -> None:
    vf0, vf1 = node.host.vf_address(0, 0), node.host.vf_address(0, 1)
    with plugin(node) as stub:
        for name, (available, must, size) in deviceplugin_requests.preferred_cases(vf0, vf1).items():
            details = refused(stub.GetPreferredAllocation, pb.PreferredAllocationRequest(container_requests=[
                pb.ContainerPreferredAllocationRequest(available_deviceIDs=available, must_include_deviceIDs=must,
                                                       allocation_size=size)]))
            assert details, name
        good = stub.GetPreferredAllocation(pb.PreferredAllocationRequest(container_requests=[
            pb.ContainerPreferredAllocationRequest(available_deviceIDs=[vf0, vf1], must_include_deviceIDs=[vf1],
                                                   allocation_size=2)]))
        assert list(good.container_responses[0].deviceIDs) == [vf1, vf0]


def test_device_plugin_edges_scenario(tmp_path: Path) -> None:
    """The reliability report's row: the same mixes, generated, through a fresh node."""
    deviceplugin_requests.device_plugin_edges(tmp_path).check()
