"""The kubelet side: the DRA plugin gRPC services on dra.sock and plugin-watcher registration.

One gRPC server serves, on ``<plugins dir>/<driver>/dra.sock``, ``DRAPlugin`` in both versions
the kubelet speaks (v1 and v1beta1: same messages, different packages) and the health stream
``DRAResourceHealth`` (v1alpha1 for 1.34 kubelets, v1beta1 from 1.35); on
``<registry dir>/<driver>-reg.sock`` it serves ``Registration`` with
``PluginInfo.type`` ``DRAPlugin``. Every claim of a request gets an answer, an error string for
the claims that failed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

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


def _answer_errors(what: str, uid: str, action: Callable[[], Any]) -> tuple[Any, str]:
    try:
        return action(), ""
    except (ClaimError, ApiError) as exc:
        message = str(exc)
    except OSError as exc:
        message = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
    except Exception as exc:  # one claim's bug must not lose the others' answers
        log.exception("%s failed uid=%s", what, uid)
        message = f"internal error: {exc}"
    log.warning("%s failed uid=%s: %s", what, uid, message)
    return None, message


class _DraPluginService:
    """DRAPlugin for one API version (`pb` is its generated message module)."""

    def __init__(self, pb: ModuleType, handler: ClaimHandler) -> None:
        self.pb = pb
        self.handler = handler

    def NodePrepareResources(self, request: Any, context: Any) -> Any:
        response = self.pb.NodePrepareResourcesResponse()
        for claim in request.claims:
            devices, error = _answer_errors("prepare", claim.uid, lambda c=claim: self.handler.prepare(
                c.namespace, c.name, c.uid))
            entry = response.claims[claim.uid]
            if error:
                entry.error = error
                continue
            for d in devices:
                entry.devices.append(self.pb.Device(request_names=[d.request] if d.request else [],
                                                    pool_name=d.pool, device_name=d.device,
                                                    cdi_device_ids=list(d.cdi_ids)))
        return response

    def NodeUnprepareResources(self, request: Any, context: Any) -> Any:
        response = self.pb.NodeUnprepareResourcesResponse()
        for claim in request.claims:
            _, error = _answer_errors("unprepare", claim.uid, lambda c=claim: self.handler.unprepare(c.uid))
            response.claims[claim.uid].error = error
        return response


class _V1(_DraPluginService, dra_v1_pb2_grpc.DRAPluginServicer):
    pass


class _V1beta1(_DraPluginService, dra_v1beta1_pb2_grpc.DRAPluginServicer):
    pass


class _HealthV1beta1(health_beta_grpc.DRAResourceHealthServicer):
    def __init__(self, server: DraPluginServer) -> None:
        self.server = server

    def NodeWatchResources(self, request: Any, context: Any) -> Iterator[Any]:
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
        self.registration_error = ""
        self._server: grpc.Server | None = None
        self._cond = threading.Condition()
        self._health_version = 0
        self._stopping = False

    def start(self) -> None:
        for path in (self.registration_path, self.socket_path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dra"))
        dra_v1_pb2_grpc.add_DRAPluginServicer_to_server(_V1(dra_v1_pb2, self.handler), server)
        dra_v1beta1_pb2_grpc.add_DRAPluginServicer_to_server(_V1beta1(dra_v1beta1_pb2, self.handler), server)
        health_grpc.add_DRAResourceHealthServicer_to_server(self, server)
        health_beta_grpc.add_DRAResourceHealthServicer_to_server(_HealthV1beta1(self), server)
        server.add_insecure_port(f"unix:{self.socket_path}")
        reg_grpc.add_RegistrationServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{self.registration_path}")
        server.start()
        for path in (self.registration_path, self.socket_path):
            os.chmod(path, 0o600)
        self._server = server
        log.info("DRA driver %s serving %s, registration %s", self.driver, self.socket_path, self.registration_path)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2)
            self._server = None
        for path in (self.registration_path, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def sockets_present(self) -> bool:
        return self.registration_path.exists() and self.socket_path.exists()

    # -- registration ----------------------------------------------------------------------
    def GetInfo(self, request: reg_pb.InfoRequest, context: Any) -> reg_pb.PluginInfo:
        return reg_pb.PluginInfo(type=PLUGIN_TYPE, name=self.driver, endpoint=str(self.socket_path),
                                 supported_versions=list(SUPPORTED_VERSIONS))

    def NotifyRegistrationStatus(self, request: reg_pb.RegistrationStatus,
                                 context: Any) -> reg_pb.RegistrationStatusResponse:
        self.registered, self.registration_error = request.plugin_registered, request.error
        if request.plugin_registered:
            log.info("DRA driver %s registered with the kubelet", self.driver)
        else:
            log.error("the kubelet refused DRA driver %s: %s", self.driver, request.error)
        return reg_pb.RegistrationStatusResponse()

    # -- health ----------------------------------------------------------------------------
    def health_changed(self) -> None:
        with self._cond:
            self._health_version += 1
            self._cond.notify_all()

    def NodeWatchResources(self, request: health_pb.NodeWatchResourcesRequest,
                           context: Any) -> Iterator[health_pb.NodeWatchResourcesResponse]:
        return self.watch_health(health_pb, context)

    def watch_health(self, pb: ModuleType, context: Any) -> Iterator[Any]:
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
