"""The DRA suite's `dra_node`: the DRA node rig (tests/support/dra_node.py) on the kubelet-node
rig (a short temporary directory: unix socket paths <= 107 bytes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sriovkit.kubesim.apiserver import FakeKubeApi
from tests.support.device_plugins import DevicePluginNodeFactory
from tests.support.dra_node import PFS, RESOURCES, DraNode


@pytest.fixture
def dra_node(make_dp_node: DevicePluginNodeFactory) -> Iterator[DraNode]:
    api = FakeKubeApi()
    api.start()
    base = make_dp_node(PFS, RESOURCES, registry=True, pod_resources=None, prefix="dra")
    node = DraNode(base.root, base.host, base.kubelet, api, api.write_kubeconfig(base.root / "kubeconfig"))
    try:
        yield node
    finally:
        while node.running:
            node.stop_agent()
        api.stop()
