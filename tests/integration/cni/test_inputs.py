"""Hostile inputs: path traversal and odd characters are rejected before anything changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.integration.cni.conftest import Node, pod_link
from tests.integration.conftest import NetnsFactory

pytestmark = pytest.mark.root


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize(("var", "value"), [
    ("CNI_CONTAINERID", "../../../../tmp/evil"),
    ("CNI_CONTAINERID", "abc/../../x"),
    ("CNI_CONTAINERID", "a\nb"),
    ("CNI_IFNAME", "../../x"),
    ("CNI_IFNAME", "eth0\x00"),
    ("CNI_IFNAME", "averyveryverylongname"),
])
def test_traversal_in_env_rejected(node: Node, netns: NetnsFactory, tmp_path: Path, command: str, var: str,
                                   value: str) -> None:
    pod = netns()
    conf = {**node.conf(0, ipam=node.host_local()), "prevResult": {"cniVersion": "1.0.0"}}
    out, code = node.run(command, conf, pod, **{var: value})
    assert code == 1 and out["code"] == ErrorCode.INVALID_ENV and var in out["details"]
    assert not node.state_dir.exists()  # nothing written, not even the state dir
    assert pod_link(pod, "net1") is None


@pytest.mark.parametrize("device", ["../../../etc/passwd", "0000:11:00.1/../../x", "0000:11:00.1\n", "*"])
def test_traversal_in_device_id_rejected(node: Node, netns: NetnsFactory, device: str) -> None:
    pod = netns()
    out, code = node.run("ADD", {**node.conf(0), "deviceID": device}, pod)
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG and "deviceID" in out["details"]
    assert not node.state_dir.exists()


def test_ipam_type_with_a_path_rejected(node: Node, netns: NetnsFactory) -> None:
    out, code = node.run("ADD", node.conf(0, ipam={"type": "../../../bin/true"}), netns())
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG and "ipam.type" in out["details"]


def test_config_that_is_not_an_object_rejected(node: Node, netns: NetnsFactory) -> None:
    raw, code = run_cni(node.env("ADD", netns()), b'["not", "an", "object"]', node.ctx)
    assert code == 1 and json.loads(raw)["code"] == ErrorCode.DECODE_FAILURE
