"""The node agent: component order, rollback on a failed start, metrics, and
`sriovctl agent` serving until SIGTERM and removing its sockets."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sriovkit.agent.metrics import AgentMetrics
from sriovkit.agent.node import NodeAgent
from sriovkit.deviceplugin.manager import DevicePluginSettings
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from sriovkit.shim.client import call_agent
from tests.support.device_plugins import DevicePluginNodeFactory
from tests.support.endpoints import free_port, http_get
from tests.support.waiting import wait_for

PFS = [{"name": "enp1s0f0", "numVfs": 3, "vfDrivers": {"2": "vfio-pci"}}]
RESOURCES = [{"resourceName": "net", "selectors": {"drivers": ["iavf"]}},
             {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}}]


@pytest.fixture
def site(make_dp_node: DevicePluginNodeFactory) -> tuple[Path, Kubelet]:
    node = make_dp_node(PFS, RESOURCES, pod_resources=None, prefix="ag", watch_interval=0.1)
    return node.root, node.kubelet


def settings(root: Path) -> DevicePluginSettings:
    return DevicePluginSettings(config_file=root / "config.json", sysfs=Sysfs(root / "host"),
                                proc_root=str(root / "proc"), device_plugin_dir=root / "dp",
                                devinfo_dir=root / "devinfo", poll_interval=0.05)


class Recorder:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def test_components_start_in_order_and_stop_in_reverse(site):
    root, kubelet = site
    log: list[str] = []
    agent = NodeAgent(settings(root), components=[Recorder("cni", log)])
    agent.add(Recorder("metrics", log))
    agent.start()
    assert agent.healthy()
    kubelet.wait_for_devices("intel.com/net", 2)
    agent.stop()
    assert log == ["start cni", "start metrics", "stop metrics", "stop cni"]
    assert not agent.healthy()
    assert sorted(p.name for p in (root / "dp").iterdir()) == ["kubelet.sock"]


def test_failed_start_stops_what_already_started(site):
    root, _ = site
    log: list[str] = []
    agent = NodeAgent(settings(root), components=[Recorder("cni", log), Recorder("broken", log, fail=True)])
    with pytest.raises(RuntimeError, match="broken cannot start"):
        agent.start()
    assert log == ["start cni", "stop cni"]
    assert sorted(p.name for p in (root / "dp").iterdir()) == ["kubelet.sock"]


def test_metrics_follow_pools_and_allocations(site):
    root, kubelet = site
    metrics = AgentMetrics()
    agent = NodeAgent(settings(root), metrics=metrics)
    agent.start()
    try:
        kubelet.wait_for_devices("intel.com/net", 2)
        kubelet.allocate("p", "c", {"intel.com/net": 2})
        value = metrics.registry.get_sample_value
        assert value("sriovkit_pool_devices", {"resource": "intel.com/net", "health": "healthy"}) == 2
        assert value("sriovkit_pool_devices", {"resource": "intel.com/dpdk", "health": "healthy"}) == 1
        assert value("sriovkit_device_allocations_total", {"resource": "intel.com/net"}) == 2
    finally:
        agent.stop()


def _get(url: str, wait_s: float = 10.0) -> tuple[int, str]:
    """GET, waiting for the endpoint to come up: the agent starts it after the device plugins."""
    return wait_for(url, lambda: http_get(url), timeout=wait_s, ignoring=(urllib.error.URLError,))


def test_sriovctl_agent_runs_until_sigterm_and_cleans_up(site):
    root, kubelet = site
    port = free_port()
    cni_socket = root / "run" / "cni.sock"
    cmd = [sys.executable, "-m", "sriovkit", "agent", "--config-file", str(root / "config.json"),
           "--host-root", str(root / "host"), "--device-plugin-dir", str(root / "dp"),
           "--devinfo-dir", str(root / "devinfo"), "--cni-socket", str(cni_socket),
           "--cni-state-dir", str(root / "cni-state"), "--metrics-address", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kubelet.wait_for_devices("intel.com/dpdk", 1, timeout=20)
        kubelet.allocate("p", "c", {"intel.com/dpdk": 1})
        assert list((root / "devinfo").iterdir())
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")  # started last: all is up
        assert stat.S_IMODE(cni_socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(cni_socket.parent.stat().st_mode) == 0o700
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and 'sriovkit_device_allocations_total{resource="intel.com/dpdk"} 1.0' in body
        # the shim's protocol, answered by the CNI library inside the agent
        reply, code = call_agent(str(cni_socket), {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
        assert code == 0 and "1.0.0" in json.loads(reply)["supportedVersions"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert sorted(p.name for p in (root / "dp").iterdir()) == ["kubelet.sock"]
    assert list((root / "devinfo").iterdir()) == []
    assert not cni_socket.exists()


@pytest.mark.parametrize(("flag", "value"), [("--metrics-address", "localhost"), ("--cni-max-concurrent", "0")])
def test_sriovctl_agent_bad_flag_is_one_line(site, flag, value):
    root, _ = site
    proc = subprocess.run([sys.executable, "-m", "sriovkit", "agent", "--config-file", str(root / "config.json"),
                           "--host-root", str(root / "host"), "--device-plugin-dir", str(root / "dp"),
                           "--cni-socket", str(root / "run" / "cni.sock"), flag, value],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and value in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sriovctl_agent_bad_config_is_one_line_per_problem(site):
    root, _ = site
    bad = root / "bad.json"
    # what upstream rejects too (an unknown field is only a warning, as upstream ignores it)
    bad.write_text('{"resourceList": [{"resourceName": "x!", "selectors": {"colour": 1}}]}')
    proc = subprocess.run([sys.executable, "-m", "sriovkit", "agent", "--config-file", str(bad),
                           "--host-root", str(root / "host"), "--device-plugin-dir", str(root / "dp"),
                           "--cni-socket", "", "--metrics-address", ""],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith("sriovctl: ") for line in lines)
    assert "resourceName" in lines[-1] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("content", "strict", "words"), [
    (b"[" * 1000 + b"]" * 1000, False, "nested 1000 levels deep"),
    (b'{"resourceList": [{"resourceName": "a"}], "x": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}", False,
     "nested"),
    (b"\xff\xfe{\x00}", False, "invalid JSON"),
    (b'{"resourceList": [{"resourceName": "a", "excludeTopology": NaN}]}', False, "NaN"),
    (b'{"resourceList": [{"resourceName": "a", "excludeTopology": 1}]}', False, "excludeTopology: must be true"),
    (b'{"ResourceList": [{"ResourceName": "a", "Selectors": {"colour": 1}}]}', True, "colour: unknown selector"),
])
def test_sriovctl_agent_unreadable_config_is_one_line_exit_2(site, content, strict, words):
    root, _ = site
    bad = root / "bad.json"
    bad.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "sriovkit", "agent", "--config-file", str(bad),
                           "--host-root", str(root / "host"), "--device-plugin-dir", str(root / "dp"),
                           "--cni-socket", "", "--metrics-address", "", *(["--strict-config"] if strict else [])],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"sriovctl: {bad}: ") for line in lines), lines
    assert words in proc.stderr


def test_metrics_endpoint_added_to_an_agent_answers_readyz_from_it(site):
    root, kubelet = site
    metrics = AgentMetrics()
    agent = NodeAgent(settings(root), metrics=metrics)
    from sriovkit.agent.metrics import MetricsServer

    server = MetricsServer("127.0.0.1:0", metrics, agent.healthy)  # no readiness check given
    agent.add(server)
    agent.start()
    try:
        kubelet.wait_for_devices("intel.com/net", 2)
        readyz = f"http://127.0.0.1:{server.port}/readyz"
        wait_for("/readyz ready", lambda: _get(readyz)[0] == 200, timeout=10)
        kubelet.stop()
        wait_for("/readyz unready with the kubelet gone", lambda: _get(readyz)[0] == 503, timeout=20)
        assert _get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    finally:
        agent.stop()
