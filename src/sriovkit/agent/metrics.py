"""The agent's Prometheus metrics and its /metrics, /healthz and /readyz HTTP endpoint.

A registry per agent (not prometheus_client's global one), so tests and
several agents in one process do not share counters. `/healthz` says the
process is alive (for the liveness probe: restarting it would not help with
anything else); `/readyz` says the node is usable (for the readiness probe):
the config loaded, every pool registered with the kubelet, the CNI socket
serving. Its body lists what is not.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from sriovkit.httpserve import BackgroundHttpServer, QuietHandler, host_port

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9808"
_CNI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# a `*_created` series per counter and histogram says when the process started, again and again
disable_created_metrics()

# what /readyz asks: () -> the problems that make the node unusable (empty: ready)
ReadinessCheck = Callable[[], list[str]]


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
        # resource -> device -> healthy, read at each scrape (sriovkit_device_healthy): a labelled
        # Gauge child per device was ~0.7 KiB each, 0.7 MiB of the agent at 1024 VFs
        self.device_health: dict[str, dict[str, bool]] = {}
        self.registry.register(_DeviceHealthCollector(self))
        self.cni_errors = Counter(
            "sriovkit_cni_errors", "CNI operations that failed, by command and the CNI error code answered",
            ["command", "code"], registry=self.registry)
        # read at each scrape from whoever registers (the device-plugin manager sets it)
        self.registration: Callable[[], dict[str, bool]] = dict
        self.registry.register(_RegistrationCollector(self))
        self.reloads = Counter(
            "sriovkit_config_reloads", "Reloads of the changed config file, by result (failure: the running "
            "config is kept)", ["result"], registry=self.registry)
        self.reload_ok = Gauge(
            "sriovkit_config_last_reload_successful", "1 when the config file on disk is the one in use",
            registry=self.registry)
        self.reload_success_time = Gauge(
            "sriovkit_config_last_reload_success_timestamp_seconds", "When the config file was last loaded",
            registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes...
        Info("sriovkit_build", "The running sriovkit", registry=self.registry).info(_build_labels())
        self.config_warnings = Counter(
            "sriovkit_config_warnings", "Things upstream ignores silently (unknown fields, selectors that match "
            "nothing) found in an input, by input (config.json, netconf)", ["input"], registry=self.registry)

    def observe_cni(self, command: str, code: int, seconds: float, error_code: int | None = None) -> None:
        """`code` is the exit status; `error_code` the CNI error code of a failure's answer."""
        self.cni_operations.labels(command=command or "unknown", result="success" if code == 0 else "error").inc()
        self.cni_latency.labels(command=command or "unknown").observe(seconds)
        if code != 0:
            self.cni_errors.labels(command=command or "unknown",
                                   code=str(error_code) if error_code is not None else "unknown").inc()

    def count_allocations(self, resource: str, count: int) -> None:
        self.allocations.labels(resource=resource).inc(count)

    def count_config_warnings(self, source: str, count: int) -> None:
        self.config_warnings.labels(source).inc(count)

    def config_loaded(self, *, ok: bool, reload: bool = True) -> None:
        """A config load: the first at start (`reload=False`) or a reload after the file changed."""
        if reload:
            self.reloads.labels(result="success" if ok else "failure").inc()
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_success_time.set(time.time())


    def set_pool(self, resource: str, health: dict[str, bool]) -> None:
        healthy = sum(1 for ok in health.values() if ok)
        self.pool_size.labels(resource=resource, health="healthy").set(healthy)
        self.pool_size.labels(resource=resource, health="unhealthy").set(len(health) - healthy)
        self.device_health[resource] = dict(health)

    def forget_pool(self, resource: str, devices: list[str]) -> None:
        for health in ("healthy", "unhealthy"):
            with contextlib.suppress(KeyError):
                self.pool_size.remove(resource, health)
        kept = self.device_health.get(resource)
        if kept is not None:
            gone = set(devices)
            kept = {d: ok for d, ok in kept.items() if d not in gone}
            if kept:
                self.device_health[resource] = kept
            else:
                self.device_health.pop(resource, None)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _DeviceHealthCollector(Collector):
    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for resource, health in sorted(dict(self.metrics.device_health).items()):
            for device, ok in sorted(health.items()):
                family.add_metric([resource, device], 1 if ok else 0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("sriovkit_device_healthy", "1 when a device is healthy, 0 when not",
                                 labels=["resource", "device"])


class _RegistrationCollector(Collector):
    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for resource, ok in sorted(self.metrics.registration().items()):
            family.add_metric([resource], 1 if ok else 0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("sriovkit_resource_registered", "1 when the resource's device plugin is "
                                 "registered with the kubelet and the kubelet watches it", labels=["resource"])


def _build_labels() -> dict[str, str]:
    # sriovkit.__version__, not importlib.metadata: that imports zipfile, csv, email and reads the
    # installed packages' metadata, ~0.8 MiB of the agent's memory for one label (a unit test keeps
    # __version__ equal to pyproject.toml's)
    from sriovkit import __version__

    return {"version": __version__, "python_version": platform.python_version()}


_DEFAULT_HOST = "127.0.0.1"  # metrics stay on the node unless an address says otherwise


class MetricsServer:
    """Serves /metrics, /healthz and /readyz. `healthy()` decides /healthz: 200 or 503;
    `ready()` lists what keeps the node unusable: none, 200; any, 503 with one line each."""

    def __init__(self, address: str, metrics: AgentMetrics, healthy: Callable[[], bool],
                 ready: ReadinessCheck | None = None) -> None:
        self.address = address
        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready  # None: the NodeAgent it is added to fills in its own (NodeAgent.add)
        self._http: BackgroundHttpServer | None = None

    @property
    def port(self) -> int:
        assert self._http is not None
        return self._http.port

    @property
    def bound_host(self) -> str:
        assert self._http is not None
        return self._http.bound_host

    def check_conflicts(self) -> None:
        """Before anything starts: OSError (EADDRINUSE) when another process listens on our address."""
        try:
            probe = socket.create_server(host_port(self.address, _DEFAULT_HOST))
        except OSError as exc:
            raise OSError(exc.errno, f"--metrics-address {self.address}: {exc.strerror} (is another agent "
                          "running?)") from None
        probe.close()

    def start(self) -> None:
        ready = self.ready or (lambda: [] if self.healthy() else ["agent: not running"])
        self._http = BackgroundHttpServer(self.address, _make_handler(self.metrics, self.healthy, ready),
                                          default_host=_DEFAULT_HOST, name="metrics")
        self._http.start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()


def _make_handler(metrics: AgentMetrics, healthy: Callable[[], bool],
                  ready: ReadinessCheck) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                self.send_body(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = healthy()
                self.send_body(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
            elif path == "/readyz":
                problems = ready()
                body = "".join(f"{p}\n" for p in problems) if problems else "ok\n"
                self.send_body(503 if problems else 200, body.encode(), "text/plain; charset=utf-8")
            else:
                self.send_body(404, b"not found\n", "text/plain")


    return Handler
