"""`sriovctl attachments` and `sriovctl allocations` against real state: a CNI record made by a
real ADD on a veth-backed VF, and a kubelet simulator's podresources API after a real Allocate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sriovkit.agent.node import NodeAgent
from sriovkit.deviceplugin.manager import DevicePluginSettings
from sriovkit.host.sysfs import Sysfs
from tests.support.cni_host import Node, NodeFactory
from tests.support.device_plugins import DevicePluginNodeFactory
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


@pytest.fixture
def vf_node(node_factory: NodeFactory) -> Node:
    return node_factory()


def sriovctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sriovkit", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_attachments_lists_what_the_cni_attached(vf_node: Node, netns: NetnsFactory) -> None:
    node, pod = vf_node, netns()
    conf = node.conf(2, ipam=node.host_local("10.93.0.0/24"))
    result, code = node.run("ADD", conf, pod, container="c" * 64)
    assert code == 0
    proc = sriovctl("attachments", "--cni-state-dir", str(node.state_dir), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert (row["container"], row["ifname"], row["pciAddress"], row["pf"], row["vfIndex"]) == (
        "c" * 64, "net1", node.vf(2), node.pf, 2)
    assert row["hostName"] == node.vf_netdev(2) and row["netns"] == pod and row["state"] == "attached"
    assert row["ips"] == [result["ips"][0]["address"]]
    table = sriovctl("attachments", "--cni-state-dir", str(node.state_dir))
    assert node.vf(2) in table.stdout and "c" * 12 in table.stdout
    assert node.run("DEL", conf, pod, container="c" * 64)[1] == 0
    assert json.loads(sriovctl("attachments", "--cni-state-dir", str(node.state_dir), "-o", "json").stdout) == []


def test_attachments_on_a_missing_dir_is_one_line() -> None:
    proc = sriovctl("attachments", "--cni-state-dir", "/nonexistent/sriov")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "/nonexistent/sriov" in proc.stderr


def test_allocations_shows_what_the_kubelet_assigned(make_dp_node: DevicePluginNodeFactory) -> None:
    node = make_dp_node([{"name": "enp1s0f0", "numVfs": 2}], [{"resourceName": "net"}], pod_resources="pr.sock",
                        prefix="al", watch_interval=0.1)
    root, kubelet = node.root, node.kubelet
    agent = NodeAgent(DevicePluginSettings(config_file=root / "config.json", sysfs=Sysfs(root / "host"),
                                           proc_root=str(root / "proc"), device_plugin_dir=root / "dp",
                                           devinfo_dir=root / "devinfo"))
    agent.start()
    try:
        kubelet.wait_for_devices("intel.com/net", 2, timeout=10)
        kubelet.allocate("web-0", "app", {"intel.com/net": 1}, namespace="shop")
        proc = sriovctl("allocations", "--pod-resources-socket", str(root / "pr.sock"), "-o", "json")
        assert proc.returncode == 0, proc.stderr
        (row,) = json.loads(proc.stdout)
        assert (row["namespace"], row["pod"], row["container"], row["resource"]) == (
            "shop", "web-0", "app", "intel.com/net")
        assert row["devices"] == kubelet.assignments[("shop", "web-0", "app")].devices["intel.com/net"]
        other = sriovctl("allocations", "--pod-resources-socket", str(root / "pr.sock"), "--resource", "x/y",
                         "-o", "json")
        assert json.loads(other.stdout) == []
    finally:
        agent.stop()
        kubelet.stop()
    down = sriovctl("allocations", "--pod-resources-socket", str(root / "pr.sock"))
    assert down.returncode == 2 and down.stderr.count("\n") == 1 and "UNAVAILABLE" in down.stderr

