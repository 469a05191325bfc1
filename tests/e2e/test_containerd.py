"""Scenario 8: a real container runtime calls our CNI. Debian's containerd (CRI plugin, runc) is
driven over the real CRI API the way the kubelet drives it; its conflist names `sriov`, the shim
`sriovctl install-cni` wrote, served by a running `sriovctl agent`, on a veth-backed VF of a
simulated host. Runs on the host, not in the VM.

What containerd really does (tests/cnirt/README.md, shared/cnirt/README.md): `loopback` first,
capitalised runtimeConfig keys, a DEL on stop and more DELs with an empty CNI_NETNS on a second
stop and on remove, and a DEL after a failed ADD.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from sriovkit.commands.ports import netlink_for
from sriovkit.host.sysfs import Sysfs
from sriovkit.hotplug.cri import CriClient
from sriovkit.kubeapi import cri_pb2 as pb
from sriovkit.kubeapi import cri_pb2_grpc as pb_grpc
from sriovkit.netlink.port import Netlink
from sriovkit.sim import host as sim
from sriovkit.sim.net import SimNetwork, attach_veths
from tests.cnirt.runtime import Containerd
from tests.support.waiting import wait_for

pytestmark = pytest.mark.root
SRIOVCTL = str(Path(sys.executable).parent / "sriovctl")
CONFLIST = "05-sriov.conflist"  # sorts before the setup's own bridge conflist: containerd uses the first
SUBNET = "10.214.0.0/24"
RELOAD_S = 2.0  # containerd picks a changed conflist up by itself within about a second


@pytest.fixture(scope="module")
def runtime() -> Iterator[Containerd]:
    containerd = Containerd(Path("/var/tmp/sriovkit-cnirt-e2e"))  # its own: the hot-plug tests use another
    containerd.up()
    yield containerd
    (containerd.cni_conf_dir / CONFLIST).unlink(missing_ok=True)
    containerd.down()


@dataclass
class Node:
    root: Path
    host: sim.SimulatedHost
    network: SimNetwork
    netlink: Netlink
    runtime: Containerd
    agent: subprocess.Popen[str]

    @property
    def state_dir(self) -> Path:
        return self.root / "cni-state"

    @property
    def ipam_dir(self) -> Path:
        return self.root / "ipam"

    def vf(self, index: int) -> str:
        return self.host.vf_address(0, index)

    def conflist(self, plugin: dict[str, Any]) -> None:
        data = {"cniVersion": "1.0.0", "name": "sriov-e2e", "plugins": [{"type": "sriov", **plugin}]}
        tmp = self.runtime.cni_conf_dir / f".{CONFLIST}.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.runtime.cni_conf_dir / CONFLIST)
        time.sleep(RELOAD_S)

    def host_view(self, index: int) -> tuple[str | None, int]:
        return self.netlink.device_netdev(self.vf(index)), self.netlink.vf_settings(self.host.spec.pfs[0].name,
                                                                                     index).vlan


@pytest.fixture
def node(runtime: Containerd) -> Iterator[Node]:
    root = Path(tempfile.mkdtemp(prefix="ct", dir="/tmp"))
    pf = f"ct{secrets.token_hex(3)}"
    host = sim.create(root / "host", {"pfs": [{"name": pf, "numVfs": 2, "totalVfs": 8}]})
    network = attach_veths(host)
    (root / "config.json").write_text(json.dumps({"resourceList": [{"resourceName": "ct"}]}))
    agent = subprocess.Popen(
        [SRIOVCTL, "agent", "--config-file", str(root / "config.json"), "--host-root", str(host.root),
         "--device-plugin-dir", str(root / "dp"), "--devinfo-dir", str(root / "devinfo"),
         "--cni-socket", str(root / "run" / "cni.sock"), "--cni-state-dir", str(root / "cni-state"),
         "--metrics-address", ""], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    subprocess.run([SRIOVCTL, "install-cni", "--dest", str(runtime.cni_bin_dir), "--agent-socket",
                    str(root / "run" / "cni.sock"), "--host-root", str(host.root), "--state-dir",
                    str(root / "cni-state")], check=True, capture_output=True)
    sysfs = Sysfs(host.root)
    n = Node(root, host, network, netlink_for(sysfs), runtime, agent)
    wait_for("the agent's CNI socket", lambda: (root / "run" / "cni.sock").exists(), timeout=20)
    try:
        yield n
    finally:
        for sandbox in _sandboxes(runtime):
            _remove(runtime, sandbox)
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        network.destroy()
        n.netlink.close()
        shutil.rmtree(root, ignore_errors=True)


def _cri(runtime: Containerd) -> tuple[grpc.Channel, pb_grpc.RuntimeServiceStub]:
    channel = grpc.insecure_channel(f"unix://{runtime.socket}")
    return channel, pb_grpc.RuntimeServiceStub(channel)


def _sandboxes(runtime: Containerd) -> list[str]:
    channel, cri = _cri(runtime)
    with channel:
        return [s.id for s in cri.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items]


def _remove(runtime: Containerd, sandbox: str) -> None:
    channel, cri = _cri(runtime)
    with channel:
        cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox), timeout=60)
        cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox), timeout=60)


def _ip_in(netns: str, ifname: str) -> list[dict[str, Any]]:
    out = subprocess.run(["nsenter", f"--net={netns}", "ip", "-j", "addr", "show", "dev", ifname],
                         capture_output=True, text=True, check=False).stdout
    return json.loads(out) if out.strip() else []


def _leftovers(node: Node) -> list[str]:
    # attachment records; the agent's published pools (.agent-pools.json) are not one
    found = [p.name for p in node.state_dir.glob("[!.]*.json")] if node.state_dir.exists() else []
    found += [str(p.relative_to(node.ipam_dir)) for p in node.ipam_dir.rglob("*")
              if p.is_file() and p.name != "lock" and not p.name.startswith("last_reserved_ip")] \
        if node.ipam_dir.exists() else []
    return found


def test_a_pod_sandbox_gets_the_vf_and_gives_it_back_once(node: Node) -> None:
    node.conflist({"deviceID": node.vf(0), "vlan": 100,
                   "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": str(node.ipam_dir)}})
    original_name = node.host_view(0)[0]
    uid = secrets.token_hex(8)
    sandbox = node.runtime.run_pod("sriov-pod", "default", uid)
    found = CriClient(str(node.runtime.socket)).sandbox(uid, "default", "sriov-pod")
    assert found is not None and found.id == sandbox and found.netns
    (eth0,) = _ip_in(found.netns, "eth0")
    addresses = [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"]
    assert len(addresses) == 1 and addresses[0].startswith("10.214.0."), eth0
    assert node.host_view(0) == (None, 100), "the VF left the host; the PF holds its VLAN"
    assert [r.name for r in node.state_dir.glob("*.json")], "the CNI recorded the attachment"

    node.runtime.stop_pod(sandbox)  # DEL with the netns
    assert node.host_view(0) == (original_name, 0)
    assert _leftovers(node) == []
    node.runtime.stop_pod(sandbox)  # again: DEL with an empty CNI_NETNS, nothing to do
    node.runtime.remove_pod(sandbox)  # and once more on remove
    assert _sandboxes(node.runtime) == []
    assert node.host_view(0) == (original_name, 0)
    assert _leftovers(node) == []
    assert node.agent.poll() is None, "the agent served every call and still runs"


def test_a_failed_add_leaves_no_vf_moved_and_no_sandbox(node: Node) -> None:
    node.conflist({"deviceID": node.vf(1), "vlan": 200,
                   "ipam": {"type": "no-such-ipam", "subnet": SUBNET, "dataDir": str(node.ipam_dir)}})
    before = node.host_view(1)
    with pytest.raises(grpc.RpcError) as exc:
        node.runtime.run_pod("sriov-bad", "default", secrets.token_hex(8))
    assert "no-such-ipam" in str(exc.value.details()), exc.value.details()
    assert _sandboxes(node.runtime) == []
    assert node.host_view(1) == before
    assert _leftovers(node) == []


def _pools_file_says(node: Node, predicate: Any) -> bool:
    path = node.state_dir / ".agent-pools.json"
    return path.exists() and predicate(json.loads(path.read_text())["pools"])


def test_a_conflist_naming_only_the_pf_gives_each_sandbox_a_free_vf(node: Node) -> None:
    """The seeds' mode over the CRI: no deviceID anywhere, the plugin picks; the running agent's
    pool covers every VF at first, so the pick is refused naming it, until the pool is held back."""
    pf = node.host.spec.pfs[0].name
    node.conflist({"if0": pf, "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": str(node.ipam_dir)}})
    wait_for("the agent's pools", lambda: _pools_file_says(node, lambda p: len(p.get("intel.com/ct", [])) == 2),
             timeout=20)
    with pytest.raises(grpc.RpcError) as exc:
        node.runtime.run_pod("seed-refused", "default", secrets.token_hex(8))
    assert "no VF outside the agent's pools" in str(exc.value.details()) and "intel.com/ct" in str(exc.value.details())
    assert _sandboxes(node.runtime) == []

    (node.root / "config.json").write_text(json.dumps({"resourceList": [{"resourceName": "ct", "servedBy": "none"}]}))
    wait_for("the agent to hold the pool back", lambda: _pools_file_says(node, lambda p: p == {}), timeout=20)
    names = [node.host_view(i)[0] for i in range(2)]
    sandboxes = []
    for i in range(2):
        uid = secrets.token_hex(8)
        sandboxes.append(node.runtime.run_pod(f"seed-{i}", "default", uid))
        found = CriClient(str(node.runtime.socket)).sandbox(uid, "default", f"seed-{i}")
        assert found is not None and found.netns
        assert _ip_in(found.netns, "eth0"), "the picked VF is the pod's eth0"
        assert node.host_view(i)[0] is None, f"VF {i} went to sandbox {i}: lowest free index first"
        saved = json.loads((node.state_dir / Path(found.netns).name / "eth0.json").read_text())
        assert saved["pciAddress"] == node.vf(i)
    with pytest.raises(grpc.RpcError) as exc:
        node.runtime.run_pod("seed-third", "default", secrets.token_hex(8))
    assert "all 2 VFs are attached" in str(exc.value.details())
    for sandbox in sandboxes:
        node.runtime.stop_pod(sandbox)
        node.runtime.remove_pod(sandbox)
    assert [node.host_view(i)[0] for i in range(2)] == names
    assert _leftovers(node) == [] and not [p for p in node.state_dir.iterdir() if p.is_dir() and p.name != "locks"]
