"""Multus interoperability: the example NAD's config, delegated the way Multus delegates it (the
allocated VF as `deviceID`, `runtimeConfig.CNIDeviceInfoFile`), works unchanged; the container can
read its VF's details from the Device Information file, and the result carries what Multus puts
into network-status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.cni.conftest import Node, pod_addresses
from tests.integration.helpers import NetnsFactory

pytestmark = pytest.mark.root
NAD = Path(__file__).resolve().parents[3] / "deploy" / "nad" / "kernel-vf-ipam.yaml"


def delegated(nad_config: dict[str, Any], device: str, devinfo: Path, version: str) -> dict[str, Any]:
    """What Multus hands the delegate: the NAD's config plus the VF the kubelet allocated."""
    return {**nad_config, "cniVersion": version, "deviceID": device,
            "runtimeConfig": {"CNIDeviceInfoFile": str(devinfo)}}


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_the_example_nad_delegated_by_multus(node: Node, netns: NetnsFactory, tmp_path: Path, version: str) -> None:
    nad = yaml.safe_load(NAD.read_text())
    config = json.loads(nad["spec"]["config"])
    config["ipam"]["dataDir"] = str(node.ipam_dir)  # the only change: keep the allocation in the test's dir
    devinfo = tmp_path / "default-pod-sriov-net-device.json"
    pod = netns()
    conf = delegated(config, node.vf(2), devinfo, version)
    result, code = node.run("ADD", conf, pod, CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod")
    assert code == 0, result
    (interface,) = [i for i in result["interfaces"] if i.get("sandbox") == pod]
    assert interface["name"] == "net1"
    assert pod_addresses(pod, "net1") == {result["ips"][0]["address"]}
    assert result["ips"][0]["address"].startswith("10.56.217.")
    info = json.loads(devinfo.read_text())
    assert info == {"type": "pci", "version": "1.1.0",
                    "pci": {"pci-address": node.vf(2), "pf-pci-address": node.host.pf_address(0)}}
    if version == "1.1.0":  # the result itself names the VF (CNI 1.1 interfaces carry pciID)
        assert interface["pciID"] == node.vf(2)
    out, code = node.run("DEL", conf, pod)
    assert (out, code) == (None, 0)
    assert not devinfo.exists()
