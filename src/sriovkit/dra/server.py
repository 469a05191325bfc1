"""The kubelet side: the DRA plugin gRPC services on dra.sock and plugin-watcher registration.

One gRPC server serves, on ``<plugins dir>/<driver>/dra.sock``, ``DRAPlugin`` in both versions
the kubelet speaks (v1 and v1beta1: same messages, different packages) and the health stream
``DRAResourceHealth`` (v1alpha1 for 1.34 kubelets, v1beta1 from 1.35); on
``<registry dir>/<driver>-reg.sock`` it serves ``Registration`` with
``PluginInfo.type`` ``DRAPlugin``. Every claim of a request gets an answer, an error string for
the claims that failed.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

import grpc

from sriovkit import grpcserve, logs, unixsocket
from sriovkit.dra.claimconfig import ClaimError
from sriovkit.dra.kube import ApiError
from sriovkit.dra.prepare import PreparedDevice
from sriovkit.kubeapi import dra_v1_pb2, dra_v1_pb2_grpc, dra_v1beta1_pb2, dra_v1beta1_pb2_grpc
from sriovkit.kubeapi import drahealth_v1alpha1_pb2 as health_pb
from sriovkit.kubeapi import drahealth_v1alpha1_pb2_grpc as health_grpc
from sriovkit.kubeapi import drahealth_v1beta1_pb2 as health_beta_pb
from sriovkit.kubeapi import drahealth_v1beta1_pb2_grpc as health_beta_grpc
from sriovkit.kubeapi import pluginregistration_pb2 as reg_pb
from sriovkit.kubeapi import pluginregistration_pb2_grpc as reg_grpc

log = logging.getLogger(__name__)

PLUGIN_TYPE = "DRAPlugin"
SUPPORTED_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
_STREAM_WAKEUP_S = 0.5


def registration_socket(registry_dir: Path, driver: str) -> Path:
    return registry_dir / f"{driver}-reg.sock"


def dra_socket(plugins_dir: Path, driver: str) -> Path:
    return plugins_dir / driver / "dra.sock"


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    pool: str
    device: str
    healthy: bool


class ClaimHandler:
    """What the services call: prepare (the claim fetched only when needed) and unprepare."""

    def __init__(self, prepare: Callable[[str, str, str], list[PreparedDevice]],
                 unprepare: Callable[[str], object]) -> None:
        self.prepare = prepare  # (namespace, name, uid)
        self.unprepare = unprepare


_T = TypeVar("_T")


class _Claim(Protocol):
    """A claim in a DRAPlugin request (v1 and v1beta1 alike)."""

    namespace: str
    name: str
    uid: str


def _answer_errors(what: str, claim: _Claim, action: Callable[[], _T]) -> tuple[_T | None, str]:
    """One claim's answer, or its error; every line logged meanwhile names the claim, and a
    failure is logged once, here."""
    ref = f"{claim.namespace}/{claim.name}" if claim.name else ""
    with logs.context(claim=ref, claim_uid=claim.uid):
        try:
            return action(), ""
        except (ClaimError, ApiError) as exc:
            message = str(exc)
        except OSError as exc:
            message = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
        except Exception as exc:  # one claim's bug must not lose the others' answers
            log.exception("%s failed uid=%s", what, claim.uid)
            return None, f"internal error: {exc}"
        log.warning("%s failed uid=%s: %s", what, claim.uid, message)
        return None, message


class _DraPluginService:
    """DRAPlugin for one API version (`pb` is its generated message module)."""

    def __init__(self, pb: ModuleType, handler: ClaimHandler) -> None:
        self.pb = pb
        self.handler = handler

    def NodePrepareResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = self.pb.NodePrepareResourcesResponse()
        for claim in request.claims:
            devices, error = _answer_errors("prepare", claim, functools.partial(
                self.handler.prepare, claim.namespace, claim.name, claim.uid))
            entry = response.claims[claim.uid]
            if error or devices is None:
                entry.error = error
                continue
            for d in devices:
                entry.devices.append(self.pb.Device(request_names=[d.request] if d.request else [],
                                                    pool_name=d.pool, device_name=d.device,
                                                    cdi_device_ids=list(d.cdi_ids)))
        return response

    def NodeUnprepareResources(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = self.pb.NodeUnprepareResourcesResponse()
        for claim in request.claims:
            _, error = _answer_errors("unprepare", claim, functools.partial(self.handler.unprepare, claim.uid))
            response.claims[claim.uid].error = error
        return response


class _V1(_DraPluginService, dra_v1_pb2_grpc.DRAPluginServicer):
    pass


class _V1beta1(_DraPluginService, dra_v1beta1_pb2_grpc.DRAPluginServicer):
    pass


class _HealthV1beta1(health_beta_grpc.DRAResourceHealthServicer):
    def __init__(self, server: DraPluginServer) -> None:
        self.server = server

    def NodeWatchResources(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        return self.server.watch_health(health_beta_pb, context)


class DraPluginServer(health_grpc.DRAResourceHealthServicer, reg_grpc.RegistrationServicer):
    def __init__(self, driver: str, *, registry_dir: Path, plugins_dir: Path, handler: ClaimHandler,
                 health: Callable[[], list[DeviceHealth]]) -> None:
        self.driver = driver
        self.registration_path = registration_socket(registry_dir, driver)
        self.socket_path = dra_socket(plugins_dir, driver)
        self.handler = handler
        self.health = health
        self.registered: bool | None = None  # what the kubelet last said
        self.on_registered: Callable[[], None] | None = None
        self.registration_error = ""
        self._servers: list[grpc.Server] = []
        self._identities: list[unixsocket.SocketIdentity | None] = [None, None]
        self._cond = threading.Condition()
        self._health_version = 0
        self._stopping = False

    def start(self) -> None:
        """dra.sock first, the registration socket last: once the plugin watcher sees the latter,
        the kubelet can call the former. Both 0600 from the first instant, never over another
        process's live socket (sriovkit.unixsocket)."""
        dra = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dra"))
        dra_v1_pb2_grpc.add_DRAPluginServicer_to_server(_V1(dra_v1_pb2, self.handler), dra)
        dra_v1beta1_pb2_grpc.add_DRAPluginServicer_to_server(_V1beta1(dra_v1beta1_pb2, self.handler), dra)
        health_grpc.add_DRAResourceHealthServicer_to_server(self, dra)
        health_beta_grpc.add_DRAResourceHealthServicer_to_server(_HealthV1beta1(self), dra)
        reg = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="dra-reg"))
        reg_grpc.add_RegistrationServicer_to_server(self, reg)
        with self._cond:
            self._stopping = False
        self.registered, self.registration_error = None, ""
        try:
            self.socket_path.parent.mkdir(parents=True, exist_ok=True)
            self._identities[0] = grpcserve.serve_at(dra, self.socket_path, f"DRA socket of {self.driver}")
            self._servers.append(dra)
            self.registration_path.parent.mkdir(parents=True, exist_ok=True)
            self._identities[1] = grpcserve.serve_at(reg, self.registration_path,
                                                     f"DRA registration socket of {self.driver}")
            self._servers.append(reg)
        except BaseException:
            dra.stop(0)
            reg.stop(0)
            self.stop()
            raise
        log.info("DRA driver %s serving %s, registration %s", self.driver, self.socket_path, self.registration_path)

    def check_conflicts(self) -> None:
        """Raise SocketInUseError when another process serves on our sockets; changes nothing."""
        for path in (self.registration_path, self.socket_path):
            unixsocket.check_free(path, f"DRA driver {self.driver}")

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for server in reversed(self._servers):  # registration first: the kubelet stops seeing us
            server.stop(grace=0.5).wait(2)
        self._servers.clear()
        for path, identity in zip((self.socket_path, self.registration_path), self._identities, strict=True):
            unixsocket.remove_if_ours(path, identity)  # never another process's socket
        self._identities = [None, None]

    def sockets_present(self) -> bool:
        """Whether both socket files are still the ones we placed (someone may have removed them)."""
        return all(identity is not None and unixsocket.SocketIdentity.of(path) == identity
                   for path, identity in zip((self.socket_path, self.registration_path), self._identities,
                                             strict=True))

    # -- registration ----------------------------------------------------------------------
    def GetInfo(self, request: reg_pb.InfoRequest, context: grpc.ServicerContext) -> reg_pb.PluginInfo:
        return reg_pb.PluginInfo(type=PLUGIN_TYPE, name=self.driver, endpoint=str(self.socket_path),
                                 supported_versions=list(SUPPORTED_VERSIONS))

    def NotifyRegistrationStatus(self, request: reg_pb.RegistrationStatus,
                                 context: grpc.ServicerContext) -> reg_pb.RegistrationStatusResponse:
        self.registered, self.registration_error = request.plugin_registered, request.error
        if request.plugin_registered:
            log.info("DRA driver %s registered with the kubelet", self.driver)
            if self.on_registered is not None:
                self.on_registered()
        else:
            log.error("the kubelet refused DRA driver %s: %s", self.driver, request.error)
        return reg_pb.RegistrationStatusResponse()

    # -- health ----------------------------------------------------------------------------
    def health_changed(self) -> None:
        with self._cond:
            self._health_version += 1
            self._cond.notify_all()

    def NodeWatchResources(self, request: health_pb.NodeWatchResourcesRequest,
                           context: grpc.ServicerContext) -> Iterator[health_pb.NodeWatchResourcesResponse]:
        return self.watch_health(health_pb, context)

    def watch_health(self, pb: ModuleType, context: grpc.ServicerContext) -> Iterator[Any]:
        """Every device's health now, then again at each change, until the kubelet goes away.
        `pb`: the health API version's message module (v1alpha1 or v1beta1)."""
        seen = -1
        last: list[DeviceHealth] | None = None
        while context.is_active():
            with self._cond:
                if self._stopping:
                    return
                if seen == self._health_version:
                    self._cond.wait(_STREAM_WAKEUP_S)
                    continue
                seen = self._health_version
            current = self.health()
            if current == last:
                continue
            last = current
            now = int(time.time())
            yield pb.NodeWatchResourcesResponse(devices=[_device_health(pb, h, now) for h in current])


def _device_health(pb: ModuleType, h: DeviceHealth, now: int) -> Any:
    entry = pb.DeviceHealth(device=pb.DeviceIdentifier(pool_name=h.pool, device_name=h.device),
                            health=pb.HEALTHY if h.healthy else pb.UNHEALTHY, last_updated_time=now)
    if not h.healthy and "message" in pb.DeviceHealth.DESCRIPTOR.fields_by_name:
        entry.message = "PF link down"
    return entry
