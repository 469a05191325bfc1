"""sriovkit's own CRI stubs (kubeapi/cri.proto) against containerd's runtime.v1 service."""

from __future__ import annotations

import os
import uuid

import grpc
import pytest

from sriovkit.hotplug.cri import CriClient, CriError
from sriovkit.kubeapi import cri_pb2 as pb
from sriovkit.kubeapi import cri_pb2_grpc as pb_grpc
from tests.cnirt.runtime import Containerd

pytestmark = pytest.mark.root


def test_version_names_the_runtime_and_the_v1_api(containerd: Containerd):
    with grpc.insecure_channel(f"unix://{containerd.socket}") as channel:
        reply = pb_grpc.RuntimeServiceStub(channel).Version(pb.VersionRequest(version="v1"), timeout=30)
    assert reply.runtime_name == "containerd"
    assert reply.runtime_api_version == "v1"
    assert containerd.version().startswith(f"containerd {reply.runtime_version} ")


def test_sandbox_found_by_uid_with_its_netns_until_stopped(containerd: Containerd):
    uid = str(uuid.uuid4())
    client = CriClient(str(containerd.socket))
    sandbox_id = containerd.run_pod("cri-probe", "ns-cri", uid)
    try:
        found = client.sandbox(uid, "ns-cri", "cri-probe")
        assert found is not None and found.id == sandbox_id
        assert os.path.exists(found.netns)  # the netns path read from the verbose info is real
        assert client.sandbox(str(uuid.uuid4()), "ns-cri", "cri-probe") is None
        containerd.stop_pod(sandbox_id)
        assert client.sandbox(uid, "ns-cri", "cri-probe") is None  # only ready sandboxes count
    finally:
        containerd.remove_pod(sandbox_id)


def test_absent_runtime_is_a_cri_error_naming_the_endpoint(tmp_path):
    with pytest.raises(CriError, match=r"CRI at unix://.*: UNAVAILABLE"):
        CriClient(str(tmp_path / "no.sock")).sandbox("u", "ns", "p")
