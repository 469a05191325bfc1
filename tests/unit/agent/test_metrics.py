"""Metrics and health over a real HTTP socket on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from sriovkit.agent.metrics import AgentMetrics, MetricsServer


@pytest.fixture
def served():
    metrics = AgentMetrics()
    state = {"healthy": True}
    server = MetricsServer("127.0.0.1:0", metrics, lambda: state["healthy"])
    server.start()
    yield metrics, server, state
    server.stop()


def get(server, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_cni_operations_and_latency_are_exposed(served):
    metrics, server, _ = served
    metrics.observe_cni("ADD", 0, 0.02)
    metrics.observe_cni("ADD", 1, 0.5)
    metrics.observe_cni("DEL", 0, 0.01)
    status, body = get(server, "/metrics")
    assert status == 200
    assert 'sriovkit_cni_operations_total{command="ADD",result="success"} 1.0' in body
    assert 'sriovkit_cni_operations_total{command="ADD",result="error"} 1.0' in body
    assert 'sriovkit_cni_operation_seconds_count{command="ADD"} 2.0' in body
    assert 'sriovkit_cni_operation_seconds_bucket{command="DEL",le="0.025"} 1.0' in body


def test_pool_sizes_and_device_health(served):
    metrics, server, _ = served
    metrics.set_pool("intel.com/net", {"0000:11:00.0": True, "0000:11:00.1": False})
    metrics.allocations.labels(resource="intel.com/net").inc()
    body = get(server, "/metrics")[1]
    assert 'sriovkit_pool_devices{health="healthy",resource="intel.com/net"} 1.0' in body
    assert 'sriovkit_pool_devices{health="unhealthy",resource="intel.com/net"} 1.0' in body
    assert 'sriovkit_device_healthy{device="0000:11:00.1",resource="intel.com/net"} 0.0' in body
    assert 'sriovkit_device_allocations_total{resource="intel.com/net"} 1.0' in body
    assert 'sriovkit_device_healthy{device="0000:11:00.0",resource="intel.com/net"} 1.0' in body
    metrics.forget_pool("intel.com/net", ["0000:11:00.1"])
    body = get(server, "/metrics")[1]
    assert 'sriovkit_device_healthy{device="0000:11:00.0",resource="intel.com/net"} 1.0' in body
    assert 'device="0000:11:00.1"' not in body
    metrics.forget_pool("intel.com/net", ["0000:11:00.0", "0000:11:00.1"])
    assert "intel.com/net" not in get(server, "/metrics")[1].split("sriovkit_device_allocations")[0]


def test_healthz_follows_the_agent(served):
    _, server, state = served
    assert get(server, "/healthz") == (200, "ok\n")
    state["healthy"] = False
    assert get(server, "/healthz") == (503, "unhealthy\n")
    assert get(server, "/nope")[0] == 404


def test_registries_are_per_agent():
    a, b = AgentMetrics(), AgentMetrics()
    a.observe_cni("ADD", 0, 0.1)
    assert b"command=\"ADD\"" not in b.exposition()


def test_default_address_is_loopback():
    from sriovkit.agent.metrics import DEFAULT_METRICS_ADDRESS

    assert DEFAULT_METRICS_ADDRESS.startswith("127.0.0.1:")


def test_config_warnings_are_counted_by_input(served):
    metrics, server, _ = served
    metrics.count_config_warnings("config.json", 2)
    metrics.count_config_warnings("netconf", 1)
    _, body = get(server, "/metrics")
    assert 'sriovkit_config_warnings_total{input="config.json"} 2.0' in body
    assert 'sriovkit_config_warnings_total{input="netconf"} 1.0' in body
