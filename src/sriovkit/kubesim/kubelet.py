"""A kubelet stand-in that speaks the kubelet's real gRPC protocols.

It does what the kubelet's device manager does with device plugins, over real
unix sockets: serves ``v1beta1.Registration`` on ``kubelet.sock``, or watches
the plugins registry directory and uses ``pluginregistration.Registration``
(GetInfo, NotifyRegistrationStatus); consumes each plugin's ``ListAndWatch``;
admits a pod's device request by calling ``GetPreferredAllocation`` then
``Allocate``; remembers what each container got and serves it through
``podresources/v1`` (List, Get, GetAllocatableResources) on its own socket.
`restart()` behaves like a kubelet restart: the socket directory is wiped
and ``kubelet.sock`` comes back, so plugins must register again.

DRA drivers register through the same plugin watcher (``PluginInfo.type``
``DRAPlugin``); the stand-in then calls their ``DRAPlugin`` service (v1 when
offered, else v1beta1) on the endpoint they named, as the kubelet does before
a pod starts (`prepare_claims`) and after it is gone (`unprepare_claims`), and
follows their ``DRAResourceHealth`` stream as a kubelet with the
ResourceHealthStatus feature does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from sriovkit.deviceplugin.api import deviceplugin_pb2 as pb
from sriovkit.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from sriovkit.errors import SriovkitError
from sriovkit.kubeapi import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    drahealth_v1alpha1_pb2,
    drahealth_v1alpha1_pb2_grpc,
    drahealth_v1beta1_pb2,
    drahealth_v1beta1_pb2_grpc,
)
from sriovkit.kubeapi import pluginregistration_pb2 as reg_pb
from sriovkit.kubeapi import pluginregistration_pb2_grpc as reg_grpc
from sriovkit.kubeapi import podresources_pb2 as pr_pb
from sriovkit.kubeapi import podresources_pb2_grpc as pr_grpc

log = logging.getLogger(__name__)

KUBELET_SOCKET = "kubelet.sock"
SUPPORTED_VERSION = "v1beta1"
DRA_PLUGIN_TYPE = "DRAPlugin"
DRA_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")  # the kubelet's preference order
# health stream versions, newest first: a 1.35+ kubelet falls back to v1alpha1 when v1beta1 is unimplemented
HEALTH_APIS: dict[str, tuple[Any, Any]] = {
    "v1beta1": (drahealth_v1beta1_pb2, drahealth_v1beta1_pb2_grpc),
    "v1alpha1": (drahealth_v1alpha1_pb2, drahealth_v1alpha1_pb2_grpc),
}
_RPC_TIMEOUT = 5.0


class AllocationError(SriovkitError, RuntimeError):
    """A pod's request cannot be met (unknown resource, too few healthy devices, plugin error)."""


@dataclass(frozen=True, slots=True)
class DeviceState:
    health: str
    numa_nodes: tuple[int, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.health == "Healthy"


@dataclass(frozen=True, slots=True)
class Registration:
    """One successful registration, in the order the kubelet saw them."""

    resource: str
    endpoint: str
    mode: str  # "kubelet-socket" | "plugin-watcher"
    at: float


@dataclass(slots=True)
class ContainerAssignment:
    pod: str
    namespace: str
    container: str
    devices: dict[str, list[str]] = field(default_factory=dict)  # resource -> device IDs
    responses: dict[str, pb.ContainerAllocateResponse] = field(default_factory=dict)


class PluginEndpoint:
    """A registered plugin: a channel to its socket and a thread on its ListAndWatch."""

    def __init__(self, resource: str, socket_path: str, on_update: Callable[[str], None]) -> None:
        self.resource = resource
        self.socket_path = socket_path
        self.devices: dict[str, DeviceState] = {}
        self.updates = 0
        self.connected = threading.Event()
        self.stream_ended = threading.Event()
        self.options = pb.DevicePluginOptions()
        self._on_update = on_update
        self._channel = grpc.insecure_channel(f"unix:{socket_path}")
        self.stub = pb_grpc.DevicePluginStub(self._channel)
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name=f"law-{resource}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.options = self.stub.GetDevicePluginOptions(pb.Empty(), timeout=_RPC_TIMEOUT)
            self._stream = self.stub.ListAndWatch(pb.Empty())
            for response in self._stream:
                self.devices = {
                    d.ID: DeviceState(d.health, tuple(n.ID for n in d.topology.nodes)) for d in response.devices
                }
                self.updates += 1
                self.connected.set()
                self._on_update(self.resource)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                log.info("ListAndWatch ended resource=%s: %s", self.resource, exc.code())
        finally:
            # like the device manager: a plugin that went away has no healthy devices
            self.devices = {i: DeviceState("Unhealthy", s.numa_nodes) for i, s in self.devices.items()}
            self.stream_ended.set()
            self._on_update(self.resource)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
        self._channel.close()
        self._thread.join(timeout=2)


class DraEndpoint:
    """A registered DRA driver: its DRAPlugin stub in the chosen version and its health stream."""

    def __init__(self, driver: str, socket_path: str, version: str, on_update: Callable[[str], None], *,
                 health_apis: tuple[str, ...] = tuple(HEALTH_APIS)) -> None:
        self.driver = driver
        self.health_apis = health_apis
        self.health_api: str | None = None  # the version the stream is open on
        self.socket_path = socket_path
        self.version = version
        self.pb: Any = dra_v1_pb2 if version == "v1.DRAPlugin" else dra_v1beta1_pb2
        grpc_mod: Any = dra_v1_pb2_grpc if version == "v1.DRAPlugin" else dra_v1beta1_pb2_grpc
        self._channel = grpc.insecure_channel(f"unix:{socket_path}")
        self.stub = grpc_mod.DRAPluginStub(self._channel)
        self.health: dict[tuple[str, str], str] = {}  # (pool, device) -> HEALTHY | UNHEALTHY | UNKNOWN
        self.health_updates = 0
        self._on_update = on_update
        self._stream: Any = None
        # a stub made on a closed channel crashes grpc's C core (a segfault, seen when close()
        # came while the thread moved on to the next health API): both happen under this lock
        self._closing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._watch_health, name=f"dra-health-{driver}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch_health(self) -> None:
        for version in self.health_apis:
            pb, grpc_mod = HEALTH_APIS[version]
            try:
                with self._closing:
                    if self._closed:
                        return
                    self._stream = grpc_mod.DRAResourceHealthStub(self._channel).NodeWatchResources(
                        pb.NodeWatchResourcesRequest())
                for response in self._stream:
                    self.health_api = version
                    self.health = {(d.device.pool_name, d.device.device_name): pb.HealthStatus.Name(d.health)
                                   for d in response.devices}
                    self.health_updates += 1
                    self._on_update(self.driver)
                return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    continue  # an older driver: try the previous version
                if exc.code() != grpc.StatusCode.CANCELLED:
                    log.info("DRA health stream ended driver=%s: %s", self.driver, exc.code())
                return

    def close(self) -> None:
        with self._closing:
            self._closed = True
            if self._stream is not None:
                self._stream.cancel()
            self._channel.close()
        self._thread.join(timeout=2)


class Kubelet(pb_grpc.RegistrationServicer, pr_grpc.PodResourcesListerServicer):
    """The kubelet stand-in. Construction stores paths; `start()` creates the sockets."""

    def __init__(self, device_plugin_dir: str | Path, *, pod_resources_socket: str | Path | None = None,
                 plugins_registry_dir: str | Path | None = None, watch_interval: float = 0.1,
                 dra_health_apis: tuple[str, ...] = tuple(HEALTH_APIS)) -> None:
        self.dra_health_apis = dra_health_apis
        self.device_plugin_dir = Path(device_plugin_dir)
        self.pod_resources_socket = Path(pod_resources_socket) if pod_resources_socket else None
        self.plugins_registry_dir = Path(plugins_registry_dir) if plugins_registry_dir else None
        self.watch_interval = watch_interval
        self.endpoints: dict[str, PluginEndpoint] = {}
        self.dra_drivers: dict[str, DraEndpoint] = {}
        self.registrations: list[Registration] = []
        self.assignments: dict[tuple[str, str, str], ContainerAssignment] = {}
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None
        self._pr_server: grpc.Server | None = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._watched: dict[str, tuple[int, int]] = {}

    @property
    def socket_path(self) -> Path:
        return self.device_plugin_dir / KUBELET_SOCKET

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self.device_plugin_dir.mkdir(parents=True, exist_ok=True)
        self._serve_registration()
        if self.pod_resources_socket is not None:
            self.pod_resources_socket.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.pod_resources_socket.unlink()
            self._pr_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="podres"))
            pr_grpc.add_PodResourcesListerServicer_to_server(self, self._pr_server)
            self._pr_server.add_insecure_port(f"unix:{self.pod_resources_socket}")
            self._pr_server.start()
        if self.plugins_registry_dir is not None:
            self.plugins_registry_dir.mkdir(parents=True, exist_ok=True)
            self._stopping.clear()
            self._watcher = threading.Thread(target=self._watch_registry, name="plugin-watcher", daemon=True)
            self._watcher.start()

    def _serve_registration(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="kubelet"))
        pb_grpc.add_RegistrationServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        self._server = server

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        for server in (self._server, self._pr_server):
            if server is not None:
                server.stop(grace=0.2).wait(2)
        self._drop_endpoints()
        for path in (self.socket_path, self.pod_resources_socket):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def restart(self, *, wipe_sockets: bool = True) -> None:
        """Like a kubelet restart: stop serving, drop every plugin connection, wipe the
        device-plugin directory's sockets (the kubelet does), then serve a new
        kubelet.sock. Assignments survive (the kubelet checkpoints them)."""
        if self._server is not None:
            self._server.stop(grace=0.1).wait(2)
        self._drop_endpoints()
        if wipe_sockets:
            for entry in os.scandir(self.device_plugin_dir):
                if _is_socket(entry.path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        with self._cond:
            self._watched.clear()
        self._serve_registration()

    def _drop_endpoints(self) -> None:
        with self._cond:
            endpoints: list[PluginEndpoint | DraEndpoint] = [*self.endpoints.values(), *self.dra_drivers.values()]
            self.endpoints.clear()
            self.dra_drivers.clear()
            self._cond.notify_all()
        for endpoint in endpoints:
            endpoint.close()

    # -- registration ----------------------------------------------------------------
    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.Empty:
        if request.version != SUPPORTED_VERSION:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unsupported device plugin API version {request.version!r}")
        if "/" not in request.resource_name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"invalid extended resource name {request.resource_name!r}")
        socket_path = str(self.device_plugin_dir / request.endpoint)
        self._connect(request.resource_name, socket_path, "kubelet-socket")
        return pb.Empty()

    def _connect(self, resource: str, socket_path: str, mode: str) -> None:
        endpoint = PluginEndpoint(resource, socket_path, self._notify)
        with self._cond:
            old = self.endpoints.pop(resource, None)
            self.endpoints[resource] = endpoint
            self.registrations.append(Registration(resource, socket_path, mode, time.monotonic()))
            self._cond.notify_all()
        if old is not None:
            # the kubelet replaces an endpoint registered again under the same name
            threading.Thread(target=old.close, daemon=True).start()
        endpoint.start()
        log.info("plugin registered resource=%s endpoint=%s mode=%s", resource, socket_path, mode)

    def _notify(self, resource: str) -> None:
        with self._cond:
            self._cond.notify_all()

    def _watch_registry(self) -> None:
        assert self.plugins_registry_dir is not None
        while not self._stopping.wait(self.watch_interval):
            try:
                entries = [e for e in os.scandir(self.plugins_registry_dir) if _is_socket(e.path)]
            except FileNotFoundError:
                continue
            for entry in entries:
                st = entry.stat()
                identity = (st.st_ino, st.st_mtime_ns)  # not ctime: a chmod is no new plugin
                if self._watched.get(entry.path) != identity:
                    self._watched[entry.path] = identity
                    self._register_through_watcher(entry.path)
            present = {e.path for e in entries}
            for path in [p for p in self._watched if p not in present]:
                del self._watched[path]

    def _register_through_watcher(self, path: str) -> None:
        try:
            with grpc.insecure_channel(f"unix:{path}") as channel:
                stub = reg_grpc.RegistrationStub(channel)
                info = stub.GetInfo(reg_pb.InfoRequest(), timeout=_RPC_TIMEOUT)
                error = self._validate_info(info)
                if error is None and info.type == DRA_PLUGIN_TYPE:
                    self._connect_dra(info, path)
                elif error is None:
                    self._connect(info.name, info.endpoint or path, "plugin-watcher")
                stub.NotifyRegistrationStatus(
                    reg_pb.RegistrationStatus(plugin_registered=error is None, error=error or ""),
                    timeout=_RPC_TIMEOUT)
        except grpc.RpcError as exc:
            log.warning("plugin watcher could not register %s: %s", path, exc.code())

    def _connect_dra(self, info: reg_pb.PluginInfo, path: str) -> None:
        version = next(v for v in DRA_VERSIONS if v in info.supported_versions)
        endpoint = DraEndpoint(info.name, info.endpoint or path, version, self._notify,
                               health_apis=self.dra_health_apis)
        with self._cond:
            old = self.dra_drivers.pop(info.name, None)
            self.dra_drivers[info.name] = endpoint
            self.registrations.append(Registration(info.name, endpoint.socket_path, "dra", time.monotonic()))
            self._cond.notify_all()
        if old is not None:
            threading.Thread(target=old.close, daemon=True).start()
        endpoint.start()
        log.info("DRA driver registered driver=%s endpoint=%s version=%s", info.name, endpoint.socket_path, version)

    @staticmethod
    def _validate_info(info: reg_pb.PluginInfo) -> str | None:
        if info.type == DRA_PLUGIN_TYPE:
            if not any(v in info.supported_versions for v in DRA_VERSIONS):
                return f"no supported DRA version in {list(info.supported_versions)}"
            if not info.name:
                return "a DRA driver must have a name"
            return None
        if info.type != "DevicePlugin":
            return f"unsupported plugin type {info.type!r}"
        if SUPPORTED_VERSION not in info.supported_versions:
            return f"no supported version in {list(info.supported_versions)}"
        return None

    # -- what the kubelet knows ----------------------------------------------------------
    def resources(self) -> dict[str, dict[str, DeviceState]]:
        with self._cond:
            return {name: dict(e.devices) for name, e in self.endpoints.items()}

    def wait_for(self, predicate: Callable[[Kubelet], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate(self)` holds (re-checked on every registration or update)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def wait_for_devices(self, resource: str, count: int | None = None, timeout: float = 5.0) -> dict[str, DeviceState]:
        def ready(k: Kubelet) -> bool:
            e = k.endpoints.get(resource)
            return e is not None and e.connected.is_set() and (count is None or len(e.devices) == count)

        if not self.wait_for(ready, timeout):
            raise TimeoutError(f"resource {resource} did not report {count if count is not None else 'any'} devices")
        return self.resources()[resource]

    # -- DRA ----------------------------------------------------------------------------
    def wait_for_dra(self, driver: str, timeout: float = 5.0) -> DraEndpoint:
        if not self.wait_for(lambda k: driver in k.dra_drivers, timeout):
            raise TimeoutError(f"DRA driver {driver} did not register")
        return self.dra_drivers[driver]

    def prepare_claims(self, driver: str, claims: list[tuple[str, str, str]]) -> dict[str, Any]:
        """NodePrepareResources for (namespace, uid, name) claims; uid -> the driver's answer."""
        endpoint = self.dra_drivers[driver]
        request = endpoint.pb.NodePrepareResourcesRequest(
            claims=[endpoint.pb.Claim(namespace=ns, uid=uid, name=name) for ns, uid, name in claims])
        return dict(endpoint.stub.NodePrepareResources(request, timeout=_RPC_TIMEOUT).claims)

    def unprepare_claims(self, driver: str, claims: list[tuple[str, str, str]]) -> dict[str, Any]:
        endpoint = self.dra_drivers[driver]
        request = endpoint.pb.NodeUnprepareResourcesRequest(
            claims=[endpoint.pb.Claim(namespace=ns, uid=uid, name=name) for ns, uid, name in claims])
        return dict(endpoint.stub.NodeUnprepareResources(request, timeout=_RPC_TIMEOUT).claims)

    def wait_for_dra_health(self, driver: str, predicate: Callable[[dict[tuple[str, str], str]], bool],
                            timeout: float = 5.0) -> dict[tuple[str, str], str]:
        def ready(k: Kubelet) -> bool:
            e = k.dra_drivers.get(driver)
            return e is not None and e.health_updates > 0 and predicate(dict(e.health))

        if not self.wait_for(ready, timeout):
            e = self.dra_drivers.get(driver)
            raise TimeoutError(f"DRA health of {driver} did not get there: {e.health if e else 'not registered'}")
        return dict(self.dra_drivers[driver].health)

    # -- admission ----------------------------------------------------------------------
    def allocate(self, pod: str, container: str, request: Mapping[str, int], *,
                 namespace: str = "default") -> dict[str, pb.ContainerAllocateResponse]:
        """Admit one container's device request like the device manager: choose
        (asking the plugin's preference when offered), Allocate, remember."""
        key = (namespace, pod, container)
        assignment = ContainerAssignment(pod, namespace, container)
        for resource, count in request.items():
            endpoint = self.endpoints.get(resource)
            if endpoint is None:
                raise AllocationError(f"unknown resource {resource}")
            chosen = self._choose(endpoint, count)
            try:
                response = endpoint.stub.Allocate(
                    pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=chosen)]),
                    timeout=_RPC_TIMEOUT)
            except grpc.RpcError as exc:
                raise AllocationError(f"Allocate for {resource} failed: {exc.code().name}: {exc.details()}") from None
            assignment.devices[resource] = chosen
            assignment.responses[resource] = response.container_responses[0]
        with self._cond:
            self.assignments[key] = assignment
        return assignment.responses

    def allocate_ids(self, resource: str, ids: list[str]) -> pb.AllocateResponse:
        """Call Allocate with IDs chosen by the caller (a test asking for a bad one)."""
        endpoint = self.endpoints[resource]
        request = pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=ids)])
        response: pb.AllocateResponse = endpoint.stub.Allocate(request, timeout=_RPC_TIMEOUT)
        return response

    def _choose(self, endpoint: PluginEndpoint, count: int) -> list[str]:
        in_use = {d for a in self.assignments.values() for d in a.devices.get(endpoint.resource, [])}
        available = sorted(i for i, s in endpoint.devices.items() if s.healthy and i not in in_use)
        if count > len(available):
            raise AllocationError(
                f"insufficient {endpoint.resource}: requested {count}, available {len(available)}")
        if endpoint.options.get_preferred_allocation_available:
            request = pb.PreferredAllocationRequest(container_requests=[pb.ContainerPreferredAllocationRequest(
                available_deviceIDs=available, must_include_deviceIDs=[], allocation_size=count)])
            try:
                reply = endpoint.stub.GetPreferredAllocation(request, timeout=_RPC_TIMEOUT)
                preferred = list(reply.container_responses[0].deviceIDs)
                if len(preferred) == count and set(preferred) <= set(available):
                    return preferred
            except grpc.RpcError as exc:
                log.warning("GetPreferredAllocation failed resource=%s: %s", endpoint.resource, exc.code())
        return available[:count]

    def release(self, pod: str, *, namespace: str = "default") -> None:
        with self._cond:
            for key in [k for k in self.assignments if k[0] == namespace and k[1] == pod]:
                del self.assignments[key]

    # -- podresources/v1 ------------------------------------------------------------------
    def List(self, request: pr_pb.ListPodResourcesRequest,
             context: grpc.ServicerContext) -> pr_pb.ListPodResourcesResponse:
        with self._cond:
            pods = sorted({(a.namespace, a.pod) for a in self.assignments.values()})
            return pr_pb.ListPodResourcesResponse(pod_resources=[self._pod_resources(ns, p) for ns, p in pods])

    def Get(self, request: pr_pb.GetPodResourcesRequest,
            context: grpc.ServicerContext) -> pr_pb.GetPodResourcesResponse:
        with self._cond:
            if not any(a.namespace == request.pod_namespace and a.pod == request.pod_name
                       for a in self.assignments.values()):
                # as the kubelet answers (1.34): a plain error, so gRPC Unknown, not NotFound
                context.abort(grpc.StatusCode.UNKNOWN,
                              f"pod {request.pod_name} not found in namespace {request.pod_namespace}")
            return pr_pb.GetPodResourcesResponse(
                pod_resources=self._pod_resources(request.pod_namespace, request.pod_name))

    def GetAllocatableResources(self, request: pr_pb.AllocatableResourcesRequest,
                                context: grpc.ServicerContext) -> pr_pb.AllocatableResourcesResponse:
        devices = [
            pr_pb.ContainerDevices(resource_name=name, device_ids=sorted(states))
            for name, states in sorted(self.resources().items())
        ]
        return pr_pb.AllocatableResourcesResponse(devices=devices)

    def _pod_resources(self, namespace: str, pod: str) -> pr_pb.PodResources:
        containers = []
        for a in self.assignments.values():
            if a.namespace == namespace and a.pod == pod:
                devices = [pr_pb.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in a.devices.items()]
                containers.append(pr_pb.ContainerResources(name=a.container, devices=devices))
        return pr_pb.PodResources(name=pod, namespace=namespace, containers=containers)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False
