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

from tests.support.cni_host import Node
from tests.support.kernel import pod_addresses
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root
NAD = Path(__file__).resolve().parents[3] / "deploy" / "nad" / "kernel-vf-ipam.yaml"


def multus_devinfo_path(node: Node, network: str, container_id: str, ifname: str) -> Path:
    """Where Multus points CNIDeviceInfoFile: <devinfo dir>/cni/<network>-<containerID>_<ifname>
    ('/' in the name replaced by '-'), the devinfo dir being /var/run/k8s.cni.cncf.io/devinfo."""
    return node.devinfo_dir / "cni" / f"{network}-{container_id}_{ifname}".replace("/", "-")


def delegated(nad_config: dict[str, Any], device: str, devinfo: Path, version: str) -> dict[str, Any]:
    """What Multus hands the delegate: the NAD's config plus the VF the kubelet allocated."""
    return {**nad_config, "cniVersion": version, "deviceID": device,
            "runtimeConfig": {"CNIDeviceInfoFile": str(devinfo)}}


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_the_example_nad_delegated_by_multus(node: Node, netns: NetnsFactory, tmp_path: Path, version: str) -> None:
    nad = yaml.safe_load(NAD.read_text())
    config = json.loads(nad["spec"]["config"])
    config["ipam"]["dataDir"] = str(node.ipam_dir)  # the only change: keep the allocation in the test's dir
    devinfo = multus_devinfo_path(node, config["name"], "c1", "net1")
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


def test_the_file_multus_copied_from_the_device_plugin_is_left_for_multus(node: Node, netns: NetnsFactory) -> None:
    """Multus copies the device plugin's device-info file to the CNI's path before calling it (mode
    0444). That file is not the plugin's: ADD leaves it as it is and DEL does not remove it."""
    devinfo = multus_devinfo_path(node, "sriov-net", "c1", "net1")
    devinfo.parent.mkdir(parents=True)
    copied = json.dumps({"type": "pci", "version": "1.1.0", "pci": {"pci-address": node.vf(1)}})
    devinfo.write_text(copied)
    devinfo.chmod(0o444)
    pod = netns()
    conf = {**node.conf(1), "runtimeConfig": {"CNIDeviceInfoFile": str(devinfo)}}
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert devinfo.read_text() == copied and devinfo.stat().st_mode & 0o777 == 0o444
    assert node.run("DEL", conf, pod) == (None, 0)
    assert devinfo.read_text() == copied
