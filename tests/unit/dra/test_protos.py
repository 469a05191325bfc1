"""The DRA protos are the kubelet's on the wire: service paths and field numbers."""

from __future__ import annotations

import pytest

from sriovkit.kubeapi import dra_v1_pb2, dra_v1beta1_pb2, drahealth_v1alpha1_pb2, drahealth_v1beta1_pb2


@pytest.mark.parametrize(("module", "package"), [
    (dra_v1_pb2, "k8s.io.kubelet.pkg.apis.dra.v1"),
    (dra_v1beta1_pb2, "k8s.io.kubelet.pkg.apis.dra.v1beta1"),
])
def test_dra_plugin_service_and_fields_are_the_kubelets(module, package):
    service = module.DESCRIPTOR.services_by_name["DRAPlugin"]
    assert service.full_name == f"{package}.DRAPlugin"
    assert [m.name for m in service.methods] == ["NodePrepareResources", "NodeUnprepareResources"]
    claim = module.Claim.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in claim.items()} == {"namespace": 1, "uid": 2, "name": 3}
    device = module.Device.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in device.items()} == {
        "request_names": 1, "pool_name": 2, "device_name": 3, "cdi_device_ids": 4}
    assert module.NodePrepareResourceResponse.DESCRIPTOR.fields_by_name["error"].number == 2
    assert module.NodeUnprepareResourceResponse.DESCRIPTOR.fields_by_name["error"].number == 1
    # a claim as the kubelet encodes it: tag 1 namespace, 2 uid, 3 name
    wire = module.Claim(namespace="ns", uid="u", name="n").SerializeToString()
    assert wire == b"\x0a\x02ns\x12\x01u\x1a\x01n"


def test_health_stream_is_the_kubelets():
    service = drahealth_v1alpha1_pb2.DESCRIPTOR.services_by_name["DRAResourceHealth"]
    assert service.full_name == "v1alpha1.DRAResourceHealth"
    method = service.methods_by_name["NodeWatchResources"]
    assert method.server_streaming and not method.client_streaming
    assert drahealth_v1alpha1_pb2.HealthStatus.Value("UNHEALTHY") == 2
    health = drahealth_v1alpha1_pb2.DeviceHealth(
        device=drahealth_v1alpha1_pb2.DeviceIdentifier(pool_name="p", device_name="d"),
        health=drahealth_v1alpha1_pb2.HEALTHY, last_updated_time=7)
    assert health.SerializeToString() == b"\x0a\x06\x0a\x01p\x12\x01d\x10\x01\x18\x07"


def test_health_v1beta1_is_the_kubelets():
    service = drahealth_v1beta1_pb2.DESCRIPTOR.services_by_name["DRAResourceHealth"]
    assert service.full_name == "v1beta1.DRAResourceHealth"
    fields = drahealth_v1beta1_pb2.DeviceHealth.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in fields.items()} == {
        "device": 1, "health": 2, "last_updated_time": 3, "health_check_timeout_seconds": 4, "message": 5}
