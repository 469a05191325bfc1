"""Registration (kubelet.sock and plugin watcher), ListAndWatch contents, podresources."""

from __future__ import annotations

import grpc
import pytest

from sriovkit.kubeapi import podresources_pb2 as pr_pb
from sriovkit.kubeapi import podresources_pb2_grpc as pr_grpc
from sriovkit.kubeapi.podresources import PodResourcesClient


def test_each_pool_registers_on_its_own_socket(node):
    node.start_plugins()
    names = {"intel.com/net", "intel.com/dpdk", "intel.com/uio", "nvidia.com/rdma"}
    assert node.kubelet.wait_for(lambda k: set(k.endpoints) == names)
    endpoints = {r.endpoint for r in node.kubelet.registrations}
    assert len(endpoints) == 4
    assert all(e.startswith(str(node.dp_dir)) for e in endpoints)
    assert {r.mode for r in node.kubelet.registrations} == {"kubelet-socket"}
    endpoint = node.kubelet.endpoints["intel.com/net"]
    endpoint.connected.wait(5)
    assert endpoint.options.get_preferred_allocation_available
    assert not endpoint.options.pre_start_required


def test_list_and_watch_reports_ids_health_and_numa(node):
    node.start_plugins()
    host = node.host
    net = node.kubelet.wait_for_devices("intel.com/net", 2)
    assert set(net) == {host.vf_address(0, 0), host.vf_address(0, 1)}
    assert all(s.healthy and s.numa_nodes == (0,) for s in net.values())
    rdma = node.kubelet.wait_for_devices("nvidia.com/rdma", 2)
    assert set(rdma) == {host.vf_address(1, 0), host.vf_address(1, 1)}
    assert all(s.numa_nodes == (1,) for s in rdma.values())


def test_exclude_topology_sends_no_numa(make_node):
    node = make_node(resources=[{"resourceName": "net", "excludeTopology": True, "selectors": {"vendors": ["8086"]}}])
    node.start_plugins()
    devices = node.kubelet.wait_for_devices("intel.com/net", 4)
    assert all(s.numa_nodes == () for s in devices.values())


def test_empty_pool_still_registers(make_node):
    node = make_node(resources=[{"resourceName": "none", "selectors": {"vendors": ["1234"]}}])
    node.start_plugins()
    assert node.kubelet.wait_for_devices("intel.com/none", 0) == {}


def test_plugin_watcher_registration(make_node):
    node = make_node(registry=True)
    node.start_plugins(plugins_registry_dir=node.root / "reg")
    devices = node.kubelet.wait_for_devices("intel.com/dpdk", 1)
    assert set(devices) == {node.host.vf_address(0, 2)}
    modes = {r.resource: r.mode for r in node.kubelet.registrations}
    assert modes["intel.com/dpdk"] == "plugin-watcher"
    assert not (node.dp_dir / "intel.com_dpdk.sock").exists()
    assert (node.root / "reg" / "intel.com_dpdk.sock").is_socket()
    answer = node.kubelet.allocate("p", "c", {"intel.com/dpdk": 1})
    assert answer["intel.com/dpdk"].envs["PCIDEVICE_INTEL_COM_DPDK"] == node.host.vf_address(0, 2)


def test_podresources_list_and_get(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    node.kubelet.wait_for_devices("intel.com/dpdk", 1)
    node.kubelet.allocate("web", "app", {"intel.com/net": 1, "intel.com/dpdk": 1}, namespace="ns1")
    with grpc.insecure_channel(f"unix:{node.kubelet.pod_resources_socket}") as channel:
        stub = pr_grpc.PodResourcesListerStub(channel)
        listed = stub.List(pr_pb.ListPodResourcesRequest(), timeout=5)
        [pod] = listed.pod_resources
        assert (pod.name, pod.namespace) == ("web", "ns1")
        [container] = pod.containers
        got = {d.resource_name: list(d.device_ids) for d in container.devices}
        assert got["intel.com/dpdk"] == [node.host.vf_address(0, 2)]
        assert len(got["intel.com/net"]) == 1
        one = stub.Get(pr_pb.GetPodResourcesRequest(pod_name="web", pod_namespace="ns1"), timeout=5)
        assert one.pod_resources == pod
        with pytest.raises(grpc.RpcError) as err:
            stub.Get(pr_pb.GetPodResourcesRequest(pod_name="nope", pod_namespace="ns1"), timeout=5)
        # the kubelet's answer (1.34, seen on the real node): a plain error, gRPC Unknown
        assert err.value.code() == grpc.StatusCode.UNKNOWN and "pod nope not found in namespace ns1" in str(
            err.value.details())
        allocatable = stub.GetAllocatableResources(pr_pb.AllocatableResourcesRequest(), timeout=5)
        assert {d.resource_name for d in allocatable.devices} >= {"intel.com/net", "intel.com/dpdk"}
    # the client hot-plug asks (as Multus asks): a pod the kubelet does not know is "no devices", not an error
    client = PodResourcesClient(str(node.kubelet.pod_resources_socket))
    assert client.devices("ns1", "nope", "intel.com/net") == []
    assert client.devices("ns1", "web", "intel.com/dpdk") == [node.host.vf_address(0, 2)]
