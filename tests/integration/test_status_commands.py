"""`sriovctl attachments` and `sriovctl allocations` against real state: a CNI record made by a
real ADD on a veth-backed VF, and a kubelet simulator's podresources API after a real Allocate."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sriovkit.agent.node import NodeAgent
from sriovkit.deviceplugin.manager import DevicePluginSettings
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from sriovkit.sim import host as sim
from tests.integration.cni.conftest import Node, NodeFactory, node_factory
from tests.integration.helpers import NetnsFactory

pytestmark = pytest.mark.root
__all__ = ["node_factory"]  # the CNI suite's fixture: a veth-backed node, leak-checked afterwards


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


def test_allocations_shows_what_the_kubelet_assigned() -> None:
    root = Path(tempfile.mkdtemp(prefix="al", dir="/tmp"))
    try:
        sim.create(root / "host", {"pfs": [{"name": "enp1s0f0", "numVfs": 2}]})
        (root / "config.json").write_text(json.dumps({"resourceList": [{"resourceName": "net"}]}))
        kubelet = Kubelet(root / "dp", pod_resources_socket=root / "pr.sock")
        kubelet.start()
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
    finally:
        shutil.rmtree(root, ignore_errors=True)
