"""`sriovctl agent`'s /healthz and /readyz, and the failures it makes visible: the kubelet going away
and coming back, a rejected config reload (also a Node Event through the API), the CNI socket lost;
the metrics that say the same."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sriovkit.kubesim import Kubelet
from sriovkit.kubesim.apiserver import FakeKubeApi
from tests.support.device_plugins import DevicePluginNodeFactory
from tests.support.endpoints import free_port, http_get
from tests.support.waiting import wait_for

PFS = [{"name": "enp1s0f0", "numVfs": 3, "vfDrivers": {"2": "vfio-pci"}}]
RESOURCES = [{"resourceName": "net", "selectors": {"drivers": ["iavf"]}},
             {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}}]
NODE = "node-a"


def _until(what: Any, timeout: float = 20.0) -> Any:
    """what()'s first truthy answer (the endpoint not listening yet counts as not yet)."""
    return wait_for(getattr(what, "__name__", "the condition"), what, timeout=timeout,
                    ignoring=(urllib.error.URLError, ConnectionError))


class Agent:
    def __init__(self, root: Path, port: int, proc: subprocess.Popen[str]) -> None:
        self.root, self.port, self.proc = root, port, proc

    def get(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.port}{path}")

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def unready(self) -> str | None:
        status, body = self.get("/readyz")
        return body if status == 503 else None

    def metric(self, line_start: str) -> float | None:
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
        return None


@pytest.fixture
def site(make_dp_node: DevicePluginNodeFactory) -> Iterator[tuple[Path, Kubelet, FakeKubeApi]]:
    node = make_dp_node(PFS, RESOURCES, pod_resources=None, prefix="rdy", watch_interval=0.1)
    api = FakeKubeApi()
    api.start()
    try:
        yield node.root, node.kubelet, api
    finally:
        api.stop()


@pytest.fixture
def agent(site: tuple[Path, Kubelet, FakeKubeApi]) -> Iterator[Agent]:
    root, kubelet, api = site
    port = free_port()
    cmd = [sys.executable, "-m", "sriovkit", "agent", "--config-file", str(root / "config.json"),
           "--host-root", str(root / "host"), "--device-plugin-dir", str(root / "dp"),
           "--devinfo-dir", str(root / "devinfo"), "--cni-socket", str(root / "run" / "cni.sock"),
           "--cni-state-dir", str(root / "cni-state"), "--metrics-address", f"127.0.0.1:{port}",
           "--kubeconfig", str(api.write_kubeconfig(root / "kubeconfig")), "--node-name", NODE]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    served = Agent(root, port, proc)
    try:
        kubelet.wait_for_devices("intel.com/net", 2, timeout=20)
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err


def test_ready_when_config_pools_and_cni_socket_are_up(agent: Agent) -> None:
    assert _until(agent.ready)
    assert agent.get("/readyz") == (200, "ok\n")
    assert agent.get("/healthz") == (200, "ok\n")
    assert agent.metric('sriovkit_resource_registered{resource="intel.com/net"}') == 1
    assert agent.metric('sriovkit_resource_registered{resource="intel.com/dpdk"}') == 1


def test_unready_while_the_kubelet_is_gone_ready_when_it_returns(site, agent: Agent) -> None:
    root, kubelet, _ = site
    assert _until(agent.ready)
    kubelet.stop()
    body = _until(agent.unready)
    assert f"kubelet: no {root / 'dp' / 'kubelet.sock'}" in body
    assert agent.get("/healthz") == (200, "ok\n")  # alive: restarting the agent would not bring the kubelet
    _until(lambda: agent.metric('sriovkit_resource_registered{resource="intel.com/net"}') == 0)
    back = Kubelet(root / "dp")
    back.start()
    try:
        back.wait_for_devices("intel.com/net", 2, timeout=20)
        assert _until(agent.ready)
        assert agent.metric('sriovkit_resource_registered{resource="intel.com/net"}') == 1
    finally:
        back.stop()


def test_unready_when_the_kubelet_died_and_left_its_socket(site, agent: Agent) -> None:
    root, kubelet, _ = site
    assert _until(agent.ready)
    kubelet.stop()
    _until(agent.unready)
    # a kubelet in a process of its own, then killed: its socket file stays, nothing watches the pools
    other = subprocess.Popen([sys.executable, "-m", "sriovkit", "kubesim", "--device-plugin-dir", str(root / "dp")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _until(agent.ready)
    finally:
        other.kill()
        other.wait(timeout=10)
    # each pool finds the kubelet gone on its own: wait for the one asserted, not the first unready
    net_line = "resource intel.com/net: not registered with the kubelet"
    body = _until(lambda: (b := agent.unready()) and net_line in b and b)
    assert body, "readiness never named intel.com/net as unregistered"
    assert (root / "dp" / "kubelet.sock").exists()
    assert agent.get("/healthz")[0] == 200


def test_rejected_reload_is_unready_counted_and_an_event_on_the_node(site, agent: Agent) -> None:
    root, _, api = site
    assert _until(agent.ready)
    assert agent.metric("sriovkit_config_last_reload_successful") == 1
    (root / "config.json").write_text('{"resourceList": [{"resourceName": "net!", "selectors": {}}]}')
    body = _until(agent.unready)
    assert f"config {root / 'config.json'}: rejected, the previous config is running" in body
    assert "resourceName" in body
    assert agent.get("/healthz")[0] == 200
    assert agent.metric('sriovkit_config_reloads_total{result="failure"}') == 1
    assert agent.metric("sriovkit_config_last_reload_successful") == 0
    event = api.wait_for(lambda fake: fake.events and fake.events[-1])
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": NODE}
    assert event["type"] == "Warning" and event["reason"] == "ConfigReloadFailed"
    assert event["metadata"]["namespace"] == "default" and "resourceName" in event["message"]
    # the previous pools are still served
    assert agent.metric('sriovkit_resource_registered{resource="intel.com/dpdk"}') == 1
    before = agent.metric("sriovkit_config_last_reload_success_timestamp_seconds")
    (root / "config.json").write_text(json.dumps({"resourceList": RESOURCES[:1]}))
    assert _until(agent.ready)
    assert agent.metric('sriovkit_config_reloads_total{result="success"}') == 1
    assert agent.metric("sriovkit_config_last_reload_successful") == 1
    assert agent.metric("sriovkit_config_last_reload_success_timestamp_seconds") >= before
    assert agent.metric('sriovkit_resource_registered{resource="intel.com/dpdk"}') is None  # pool gone
    assert len(api.events) == 1


def test_unready_when_the_cni_socket_is_removed(agent: Agent) -> None:
    assert _until(agent.ready)
    (agent.root / "run" / "cni.sock").unlink()
    body = _until(agent.unready)
    assert f"cni socket {agent.root / 'run' / 'cni.sock'}: removed" in body


def test_metrics_carry_process_build_and_cni_error_series_without_created(agent: Agent) -> None:
    from sriovkit.shim.client import call_agent

    assert _until(agent.ready)  # the CNI socket too
    reply, code = call_agent(str(agent.root / "run" / "cni.sock"),
                             {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "net1",
                              "CNI_NETNS": "/proc/self/ns/net", "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"},
                             b'{"cniVersion": "1.0.0", "name": "n", "type": "sriov", "vlan": 5000}')
    assert code == 1
    answered = json.loads(reply)["code"]
    body = agent.get("/metrics")[1]
    assert f'sriovkit_cni_errors_total{{code="{answered}",command="ADD"}} 1.0' in body
    for series in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"):
        assert any(line.startswith(series + " ") for line in body.splitlines()), series
    assert 'sriovkit_build_info{python_version="' in body and 'version="' in body
    assert "_created" not in body
