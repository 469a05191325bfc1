"""The agent's Prometheus metrics and its /metrics + /healthz HTTP endpoint.

A registry per agent (not prometheus_client's global one), so tests and
several agents in one process do not share counters.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9808"
_CNI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cni_operations = Counter(
            "sriovkit_cni_operations", "CNI operations served, by command and result",
            ["command", "result"], registry=self.registry)
        self.cni_latency = Histogram(
            "sriovkit_cni_operation_seconds", "Time to serve a CNI operation",
            ["command"], buckets=_CNI_BUCKETS, registry=self.registry)
        self.allocations = Counter(
            "sriovkit_device_allocations", "Devices handed to containers by Allocate, by resource",
            ["resource"], registry=self.registry)
        self.pool_size = Gauge(
            "sriovkit_pool_devices", "Devices in a resource pool, by health",
            ["resource", "health"], registry=self.registry)
        self.device_health = Gauge(
            "sriovkit_device_healthy", "1 when a device is healthy, 0 when not",
            ["resource", "device"], registry=self.registry)

    def observe_cni(self, command: str, code: int, seconds: float) -> None:
        self.cni_operations.labels(command=command or "unknown", result="success" if code == 0 else "error").inc()
        self.cni_latency.labels(command=command or "unknown").observe(seconds)

    def set_pool(self, resource: str, health: dict[str, bool]) -> None:
        healthy = sum(1 for ok in health.values() if ok)
        self.pool_size.labels(resource=resource, health="healthy").set(healthy)
        self.pool_size.labels(resource=resource, health="unhealthy").set(len(health) - healthy)
        for device, ok in health.items():
            self.device_health.labels(resource=resource, device=device).set(1 if ok else 0)

    def forget_pool(self, resource: str, devices: list[str]) -> None:
        for health in ("healthy", "unhealthy"):
            with contextlib.suppress(KeyError):
                self.pool_size.remove(resource, health)
        for device in devices:
            with contextlib.suppress(KeyError):
                self.device_health.remove(resource, device)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves /metrics and /healthz. `healthy()` decides /healthz: 200 or 503."""

    def __init__(self, address: str, metrics: AgentMetrics, healthy: Callable[[], bool]) -> None:
        self.address = address
        self.metrics = metrics
        self.healthy = healthy
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        host, _, port = self.address.rpartition(":")
        handler = _make_handler(self.metrics, self.healthy)
        self._httpd = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _make_handler(metrics: AgentMetrics, healthy: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif self.path.split("?")[0] == "/healthz":
                ok = healthy()
                self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would flood the agent's log

    return Handler
