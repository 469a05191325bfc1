"""A VF hot-plugged into a running pod: the one the kubelet gave the pod (podresources/v1),
moved by our `sriov` plugin on a veth-backed simulated node, named in network-status."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sriovkit.agent.node import NodeAgent
from sriovkit.deviceplugin.manager import DevicePluginSettings
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from tests.support.hotplug_site import Site
from tests.support.kernel import ipv4_by_interface

pytestmark = pytest.mark.root

RESOURCE = "intel.com/hpvf"


@pytest.fixture
def sriov_site(site: Site, veth_host: Any, tmp_path: Path) -> Iterator[tuple[Site, Any, Kubelet]]:
    host, _network = veth_host
    config = tmp_path / "dp-config.json"
    config.write_text(json.dumps({"resourceList": [
        {"resourceName": "hpvf", "selectors": {"pfNames": [host.spec.pfs[0].name]}}]}))
    kubelet = Kubelet(tmp_path / "dp", pod_resources_socket=tmp_path / "pr.sock")
    kubelet.start()
    agent = NodeAgent(DevicePluginSettings(
        config_file=config, sysfs=Sysfs(host.root), proc_root=str(host.root / "proc"),
        device_plugin_dir=tmp_path / "dp", devinfo_dir=tmp_path / "devinfo", cdi_dir=tmp_path / "cdi",
        poll_interval=0.05))
    agent.start()
    try:
        kubelet.wait_for_devices(RESOURCE, 4, timeout=10)
        site.pod_resources_socket = tmp_path / "pr.sock"
        site.env.update(SRIOVKIT_HOST_ROOT=str(host.root), SRIOVKIT_CNI_STATE_DIR=str(tmp_path / "sriov-state"))
        yield site, host, kubelet
    finally:
        for controller in site.controllers:  # before the VFs go: their DELs need the simulated host
            controller.stop()
        agent.stop()
        kubelet.stop()


def in_host(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


def test_vf_from_the_pods_own_allocation(sriov_site):
    site, host, kubelet = sriov_site
    ipam = {"type": "host-local", "ranges": [[{"subnet": "10.216.1.0/24"}]], "dataDir": str(site.ipam_dir)}
    sriov = {"cniVersion": "1.0.0", "name": "sriov-a", "type": "sriov", "ipam": ipam}
    site.nad("sriov-a", sriov, resource=RESOURCE)
    site.nad("sriov-b", {**sriov, "name": "sriov-b"}, resource=RESOURCE)
    kubelet.allocate("other", "app", {RESOURCE: 1}, namespace="ns1")  # someone else's VF: never touched
    kubelet.allocate("vm-s", "app", {RESOURCE: 1}, namespace="ns1")
    mine = kubelet.assignments[("ns1", "vm-s", "app")].devices[RESOURCE][0]
    theirs = kubelet.assignments[("ns1", "other", "app")].devices[RESOURCE][0]
    netdevs = {host.vf_address(0, i): host.vf_netdev_name(0, i) for i in range(4)}
    pod = site.pod("vm-s")
    site.controller()

    site.set_networks(pod, "sriov-a")
    status = site.wait_status(pod, {"net1"})
    assert status["net1"]["device-info"] == {"type": "pci", "version": "1.1.0", "pci": {"pci-address": mine}}
    assert ipv4_by_interface(site.netns(pod))["net1"] == status["net1"]["ips"]
    assert not in_host(netdevs[mine]) and in_host(netdevs[theirs])

    # a second VF network: the pod has no second VF from the kubelet, so it is refused
    site.set_networks(pod, "sriov-a,sriov-b")
    site.kube.wait_for(lambda _: site.events("HotplugFailed", pod))
    assert site.events("HotplugFailed", pod)[0] == (
        f"ADD ns1/sriov-b@net2: pod ns1/vm-s has no unused {RESOURCE} device from the kubelet "
        f"(assigned: {mine}; in use: {mine})")
    assert all(in_host(n) for a, n in netdevs.items() if a != mine)

    site.set_networks(pod, "")
    site.wait_status(pod, set())
    assert in_host(netdevs[mine])  # given back under its own name
