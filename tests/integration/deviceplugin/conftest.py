"""The device-plugin suite's `node` and `make_node`: the device-plugin rig of
tests/support/device_plugins.py (a simulated node, kubesim's kubelet, the plugins over unix sockets)."""

from __future__ import annotations

import pytest

from tests.support.device_plugins import DevicePluginNode, DevicePluginNodeFactory


@pytest.fixture
def make_node(make_dp_node: DevicePluginNodeFactory) -> DevicePluginNodeFactory:
    return make_dp_node


@pytest.fixture
def node(make_dp_node: DevicePluginNodeFactory) -> DevicePluginNode:
    return make_dp_node()
