"""The kubelet stand-in on its own: registration checks, admission, release, restart.

A small device plugin written here with the generated servicer stands in for
ours, so these tests pin the simulator's kubelet behaviour, not the agent's."""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from sriovkit.deviceplugin.api import deviceplugin_pb2 as pb
from sriovkit.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from sriovkit.kubesim import AllocationError, Kubelet


class TinyPlugin(pb_grpc.DevicePluginServicer):
    def __init__(self, ids, *, preferred=None, offer_preferred=True):
        self.ids = ids
        self.preferred = preferred
        self.offer_preferred = offer_preferred
        self.allocated: list[list[str]] = []

    def GetDevicePluginOptions(self, request, context):
        return pb.DevicePluginOptions(get_preferred_allocation_available=self.offer_preferred)

    def ListAndWatch(self, request, context):
        yield pb.ListAndWatchResponse(devices=[pb.Device(ID=i, health="Healthy") for i in self.ids])
        while context.is_active():
            time.sleep(0.05)

    def GetPreferredAllocation(self, request, context):
        req = request.container_requests[0]
        ids = self.preferred if self.preferred is not None else list(req.available_deviceIDs)[-req.allocation_size:]
        return pb.PreferredAllocationResponse(container_responses=[pb.ContainerPreferredAllocationResponse(
            deviceIDs=ids)])

    def Allocate(self, request, context):
        self.allocated.append(list(request.container_requests[0].devices_ids))
        return pb.AllocateResponse(container_responses=[pb.ContainerAllocateResponse(envs={"X": "1"})])


@pytest.fixture
def site():
    root = Path(tempfile.mkdtemp(prefix="ks", dir="/tmp"))
    kubelet = Kubelet(root / "dp")
    kubelet.start()
    servers = []

    def serve(plugin, name="tiny.sock"):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_DevicePluginServicer_to_server(plugin, server)
        server.add_insecure_port(f"unix:{root / 'dp' / name}")
        server.start()
        servers.append(server)
        return name

    def register(name, resource="example.com/tiny", version="v1beta1"):
        with grpc.insecure_channel(f"unix:{kubelet.socket_path}") as channel:
            pb_grpc.RegistrationStub(channel).Register(
                pb.RegisterRequest(version=version, endpoint=name, resource_name=resource), timeout=5)

    yield kubelet, serve, register
    for server in servers:
        server.stop(0)
    kubelet.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_refuses_an_unknown_api_version(site):
    kubelet, serve, register = site
    with pytest.raises(grpc.RpcError) as err:
        register(serve(TinyPlugin(["a"])), version="v1alpha")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "v1alpha" in err.value.details()
    assert kubelet.registrations == []


def test_uses_the_plugins_preference_when_valid(site):
    kubelet, serve, register = site
    plugin = TinyPlugin(["a", "b", "c", "d"])
    register(serve(plugin))
    kubelet.wait_for_devices("example.com/tiny", 4)
    kubelet.allocate("p", "c", {"example.com/tiny": 2})
    assert plugin.allocated == [["c", "d"]]  # TinyPlugin prefers the last ones


def test_falls_back_when_the_preference_is_not_usable(site):
    kubelet, serve, register = site
    plugin = TinyPlugin(["a", "b", "c"], preferred=["zz"])
    register(serve(plugin))
    kubelet.wait_for_devices("example.com/tiny", 3)
    kubelet.allocate("p", "c", {"example.com/tiny": 2})
    assert plugin.allocated == [["a", "b"]]


def test_does_not_ask_for_a_preference_the_plugin_does_not_offer(site):
    kubelet, serve, register = site
    plugin = TinyPlugin(["a", "b", "c"], offer_preferred=False)
    register(serve(plugin))
    kubelet.wait_for_devices("example.com/tiny", 3)
    kubelet.allocate("p", "c", {"example.com/tiny": 1})
    assert plugin.allocated == [["a"]]


def test_assigned_devices_are_not_given_twice_until_released(site):
    kubelet, serve, register = site
    plugin = TinyPlugin(["a", "b"])
    register(serve(plugin))
    kubelet.wait_for_devices("example.com/tiny", 2)
    kubelet.allocate("p1", "c", {"example.com/tiny": 2})
    with pytest.raises(AllocationError, match="insufficient example.com/tiny: requested 1, available 0"):
        kubelet.allocate("p2", "c", {"example.com/tiny": 1})
    kubelet.release("p1")
    kubelet.allocate("p2", "c", {"example.com/tiny": 1})
    with pytest.raises(AllocationError, match="unknown resource"):
        kubelet.allocate("p3", "c", {"example.com/other": 1})


def test_restart_wipes_plugin_sockets_and_keeps_assignments(site):
    kubelet, serve, register = site
    name = serve(TinyPlugin(["a"]))
    register(name)
    kubelet.wait_for_devices("example.com/tiny", 1)
    kubelet.allocate("p", "c", {"example.com/tiny": 1})
    kubelet.restart()
    assert not (kubelet.device_plugin_dir / name).exists()
    assert kubelet.socket_path.is_socket()
    assert kubelet.endpoints == {}
    assert list(kubelet.assignments) == [("default", "p", "c")]
