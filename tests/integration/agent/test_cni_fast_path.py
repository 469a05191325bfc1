"""The CNI fast path for real: the installed `sriov` shim, the agent's socket, the CNI library on
veth-backed VFs; the fallback when the agent is down; both paths answering with the same bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sriovkit.agent.cni_service import CniService
from sriovkit.agent.metrics import AgentMetrics, MetricsServer
from sriovkit.cni.context import CniContext
from sriovkit.commands.ports import agent_cni_context
from sriovkit.shim.install import ShimSettings, install_shim
from sriovkit.shim.server import CniSocketServer
from tests.support.cni_host import Node, NodeFactory
from tests.support.kernel import pod_addresses
from tests.support.leaks import assert_no_leaks
from tests.support.names import NetnsFactory, random_id

pytestmark = pytest.mark.root


@dataclass
class FastPath:
    node: Node
    shim: Path
    socket: Path
    metrics: AgentMetrics
    server: CniSocketServer | None = None

    def start_agent(self) -> None:
        context = agent_cni_context(self.node.host.root, state_dir=self.node.ctx.state_dir, lock_timeout_s=10)
        self.server = CniSocketServer(self.socket, CniService(context, self.metrics), max_concurrent=8)
        self.server.start()

    def stop_agent(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def call(self, command: str, conf: dict[str, Any], netns: str = "", container: str = "c1",
             ifname: str = "net1") -> subprocess.CompletedProcess[bytes]:
        env = {"PATH": os.environ["PATH"], **self.node.env(command, netns, container=container, ifname=ifname)}
        return subprocess.run([str(self.shim)], input=json.dumps(conf).encode(), capture_output=True, env=env,
                              timeout=120, check=False)


@pytest.fixture(params=[pytest.param(False, id="python-shim"), pytest.param(True, id="native-shim")])
def fast_path(node_factory: NodeFactory, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FastPath]:
    node = node_factory()
    socket = tmp_path / "agent" / "cni.sock"
    (tmp_path / "bin").mkdir()
    shim = install_shim(tmp_path / "bin", ShimSettings(
        agent_socket=str(socket), fallback_python=sys.executable, interpreter=sys.executable,
        host_root=str(node.host.root), state_dir=node.ctx.state_dir, native=request.param))
    node.cni_path = f"{shim.parent}:{node.cni_path}"
    path = FastPath(node, shim, socket, AgentMetrics())
    path.start_agent()
    yield path
    path.stop_agent()


def static_ipam(address: str) -> dict[str, Any]:
    return {"type": "static", "addresses": [{"address": address, "gateway": "10.98.0.1"}],
            "routes": [{"dst": "10.97.0.0/16"}]}


def test_add_check_del_through_the_shim_and_the_agent(fast_path: FastPath, netns: NetnsFactory) -> None:
    node, pod = fast_path.node, netns()
    conf = node.conf(1, vlan=42, ipam=node.host_local("10.96.0.0/24"))
    add = fast_path.call("ADD", conf, pod)
    assert add.returncode == 0, add.stdout
    result = json.loads(add.stdout)
    assert result["interfaces"][0]["name"] == "net1" and result["interfaces"][0]["sandbox"] == pod
    assert pod_addresses(pod, "net1") == {result["ips"][0]["address"]}
    assert node.ctx.netlink.vf_settings(node.pf, 1).vlan == 42
    assert b"in-process" not in add.stderr, "the agent served it: no fallback"

    check = fast_path.call("CHECK", {**conf, "prevResult": result}, pod)
    assert (check.returncode, check.stdout) == (0, b"")
    delete = fast_path.call("DEL", conf, pod)
    assert (delete.returncode, delete.stdout) == (0, b"")
    assert node.ctx.netlink.device_netdev(node.vf(1)) == node.vf_netdev(1)

    exposition = fast_path.metrics.exposition().decode()
    for command in ("ADD", "CHECK", "DEL"):
        assert f'sriovkit_cni_operations_total{{command="{command}",result="success"}} 1.0' in exposition


def test_errors_pass_through_the_agent_intact(fast_path: FastPath, netns: NetnsFactory) -> None:
    node, pod = fast_path.node, netns()
    bad = node.conf(0, vlan=5000, cniVersion="0.4.0")
    through_agent = fast_path.call("ADD", bad, pod)
    direct = _direct(node.ctx, node.env("ADD", pod), bad)
    assert (through_agent.stdout, through_agent.returncode) == direct
    error = json.loads(through_agent.stdout)
    assert error["cniVersion"] == "0.4.0" and "vlan" in error["msg"] + error.get("details", "") and error["code"]
    assert 'command="ADD",result="error"' in fast_path.metrics.exposition().decode()


def _direct(ctx: CniContext, env: dict[str, str], conf: dict[str, Any]) -> tuple[bytes, int]:
    from sriovkit.cni.plugin import run_cni

    return run_cni(env, json.dumps(conf).encode(), ctx)


def test_fallback_when_the_agent_is_down_gives_the_same_bytes(fast_path: FastPath, netns: NetnsFactory) -> None:
    node = fast_path.node
    pod = netns()
    container = random_id()
    conf = node.conf(2, mac="02:11:22:33:44:55", ipam=static_ipam("10.98.0.9/24"))
    bad = node.conf(2, spoofchk="maybe")

    def sequence() -> list[tuple[bytes, int]]:
        out = []
        for command, c in (("ADD", conf), ("DEL", conf), ("ADD", bad), ("DEL", conf)):
            proc = fast_path.call(command, c, pod, container=container)
            out.append((proc.stdout, proc.returncode))
        return out

    through_agent = sequence()
    fast_path.stop_agent()
    fallback_proc = fast_path.call("ADD", conf, pod, container=container)
    assert b"running the CNI in-process" in fallback_proc.stderr
    fast_path.call("DEL", conf, pod, container=container)
    in_process = sequence()
    assert through_agent == in_process
    assert through_agent[0][1] == 0 and json.loads(through_agent[0][0])["interfaces"][0]["mac"] == "02:11:22:33:44:55"
    assert through_agent[2][1] != 0


def test_concurrent_adds_through_the_agent(fast_path: FastPath, netns: NetnsFactory) -> None:
    node = fast_path.node
    pods = [netns() for _ in range(4)]
    results: dict[int, subprocess.CompletedProcess[bytes]] = {}

    def add(index: int) -> None:
        conf = node.conf(index, ipam=node.host_local("10.95.0.0/24"))
        results[index] = fast_path.call("ADD", conf, pods[index], container=f"c{index}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results.values()), {i: r.stdout for i, r in results.items()}
    addresses = {json.loads(r.stdout)["ips"][0]["address"] for r in results.values()}
    assert len(addresses) == 4
    for index, pod in enumerate(pods):
        assert pod_addresses(pod, "net1") == {json.loads(results[index].stdout)["ips"][0]["address"]}
        assert node.ctx.netlink.device_netdev(node.vf(index)) is None, "moved out of the host namespace"
    for index, pod in enumerate(pods):
        conf = node.conf(index, ipam=node.host_local("10.95.0.0/24"))
        assert fast_path.call("DEL", conf, pod, container=f"c{index}").returncode == 0


def test_leak_check_sees_a_vf_left_in_a_pod(fast_path: FastPath, netns: NetnsFactory) -> None:
    """The fixture's leak check is what the tests above rely on: prove it fails on a leak."""
    node, pod = fast_path.node, netns()
    before = node.views()
    conf = node.conf(3, ipam=node.host_local("10.94.0.0/24"))
    assert fast_path.call("ADD", conf, pod).returncode == 0
    with pytest.raises(AssertionError):
        assert_no_leaks(node, before)
    assert fast_path.call("DEL", conf, pod).returncode == 0


def test_metrics_and_healthz_endpoint_on_loopback() -> None:
    metrics = AgentMetrics()
    metrics.observe_cni("ADD", 0, 0.02)
    healthy = {"ok": True}
    server = MetricsServer("127.0.0.1:0", metrics, lambda: healthy["ok"])
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
            assert 'sriovkit_cni_operations_total{command="ADD",result="success"} 1.0' in reply.read().decode()
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as reply:
            assert reply.status == 200
        healthy["ok"] = False
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert exc.value.code == 503
    finally:
        server.stop()
