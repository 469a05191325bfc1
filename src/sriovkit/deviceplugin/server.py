"""One kubelet device-plugin gRPC server for one resource pool, on its own unix socket.

The server holds the pool's current devices and health; `publish()` swaps them
and wakes every `ListAndWatch` stream. Allocation payloads come from the pure
`payload` module; this module only translates to and from the wire messages
and does the socket and registration I/O.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import grpc

from sriovkit import grpcserve, unixsocket
from sriovkit.deviceplugin import files, requests
from sriovkit.deviceplugin.api import deviceplugin_pb2 as pb
from sriovkit.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from sriovkit.deviceplugin.health import HEALTHY, UNHEALTHY
from sriovkit.deviceplugin.metrics import PoolMetrics
from sriovkit.deviceplugin.payload import (
    DEVICE_INFO_SUFFIX,
    ContainerAllocation,
    DevicePayload,
    HostDevNodes,
    container_allocation,
    device_info_file_prefix,
)
from sriovkit.deviceplugin.payload import device_payload as make_payload
from sriovkit.deviceplugin.preferred import Placement, preferred_allocation
from sriovkit.errors import SriovkitError
from sriovkit.host.model import PciDevice
from sriovkit.kubeapi import pluginregistration_pb2 as reg_pb
from sriovkit.kubeapi import pluginregistration_pb2_grpc as reg_grpc
from sriovkit.resources.pools import ResourcePool
from sriovkit.resources.selectors import Device, device_id

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
DEVICE_PLUGIN_TYPE = "DevicePlugin"
_REGISTER_TIMEOUT = 5.0
_STREAM_WAKEUP = 0.5
# A kubelet request names at most a node's devices; 4 MiB (gRPC's default) is far more than that
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # how often an idle ListAndWatch checks that its client is still there
# Allocate answers kept per device list (one per device for single-device containers, the usual
# case); past this many, the cache starts over (a kubelet asking for every combination of devices)
_ANSWER_CACHE_MAX = 8192


class UnknownDeviceError(SriovkitError, ValueError):
    """An Allocate request named a device this pool does not have, or one that is unhealthy."""


@dataclass(frozen=True, slots=True)
class ServerFiles:
    """Where this server writes: device-info files always, CDI specs in CDI mode."""

    devinfo_dir: Path
    cdi_dir: Path | None = None  # set: CDI mode


def socket_name(pool_name: str) -> str:
    """``intel.com_sriov_netdevice.sock``: the resource name with '/' as '_'."""
    return pool_name.replace("/", "_") + ".sock"


class PoolServer(pb_grpc.DevicePluginServicer, reg_grpc.RegistrationServicer):
    """Serves DevicePlugin (and, in plugin-watcher mode, pluginregistration) for one pool."""

    def __init__(self, pool: ResourcePool, health: dict[str, bool], *, socket_dir: Path, host: HostDevNodes,
                 out: ServerFiles, watcher_mode: bool = False, metrics: PoolMetrics | None = None,
                 held: Callable[[], Collection[str]] | None = None) -> None:
        self.socket_dir = socket_dir
        self.held = held  # the device IDs a CNI attachment holds now (preferred last)
        self.socket_path = socket_dir / socket_name(pool.name)
        self.watcher_mode = watcher_mode
        self.host = host
        self.out = out
        self.metrics = metrics
        self.registered_with: tuple[int, int] | None = None  # kubelet.sock identity we registered with
        self.watcher_registered = False  # plugin-watcher mode: the kubelet said it registered us
        self.kubelet_streams = 0  # ListAndWatch streams open: 0 once the kubelet that registered us died
        self._cond = threading.Condition()
        self._version = 0
        self._stopping = False
        self._grpc: grpc.Server | None = None
        self._socket_identity: unixsocket.SocketIdentity | None = None
        self._pool = pool
        self._health = dict(health)
        self._payloads: dict[str, DevicePayload] = {}
        self._devices: dict[str, Device] = {}
        self._devinfo_written: set[str] = set()  # IDs whose device-info file is current
        # device IDs -> the ContainerAllocateResponse for them: a pure function of the index
        self._answers: dict[tuple[str, ...], pb.ContainerAllocateResponse] = {}
        self._prewriter: threading.Thread | None = None
        self._index(pool)

    # -- state ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._pool.name

    @property
    def pool(self) -> ResourcePool:
        return self._pool

    def health(self) -> dict[str, bool]:
        with self._cond:
            return dict(self._health)

    def _index(self, pool: ResourcePool) -> None:
        # payloads are built when first asked for (Allocate, CDI spec): a health
        # change on a 4096-device pool must not redo selector matching for all
        self._devices = {device_id(d): d for d in pool.devices}
        self._devinfo_prefix = os.path.join(self.out.devinfo_dir, device_info_file_prefix(pool.config))
        self._payloads = {}
        self._devinfo_written = set()
        self._answers = {}

    def publish(self, pool: ResourcePool, health: dict[str, bool], *, host: HostDevNodes | None = None) -> None:
        """New devices or health: every ListAndWatch stream sends the new list."""
        with self._cond:
            gone = [i for i in self._devices if i not in health]
            if pool is not self._pool or (host is not None and host != self.host):
                self.host = host or self.host
                self._pool = pool
                self._index(pool)
            self._health = dict(health)
            self._version += 1
            self._cond.notify_all()
        if gone and self.metrics is not None:
            self.metrics.forget_pool(self.name, gone)
        self._write_files()

    def _payload(self, dev_id: str) -> DevicePayload | None:
        payload = self._payloads.get(dev_id)
        if payload is None:
            dev = self._devices.get(dev_id)
            if dev is None:
                return None
            payload = self._payloads[dev_id] = make_payload(dev, self._pool.config, self.host)
        return payload

    def _write_files(self) -> None:
        files.remove_device_info(self.out.devinfo_dir, self._pool.config, keep=self._devices)
        self._prewrite_device_info()
        if self.out.cdi_dir is not None:
            with self._cond:
                payloads = [p for i in self._devices if (p := self._payload(i)) is not None]
            files.write_cdi_spec(self.out.cdi_dir, self._pool.config, payloads)
        if self.metrics is not None:
            self.metrics.set_pool(self.name, self.health())

    def _prewrite_device_info(self) -> None:
        """Write every device's device-info file now, on a thread of its own, as upstream writes
        them all when it starts: Allocate, on the pod start path, then finds them written. A
        device Allocate asks for before the thread reached it is written by Allocate itself."""
        if self._prewriter is not None and self._prewriter.is_alive():
            self._prewriter.join()  # a new index: its devices are written by a new pass
        self._prewriter = threading.Thread(target=self._write_pending_device_info, name="devinfo", daemon=True)
        self._prewriter.start()

    def device_info_prewritten(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` for the start-up pass writing every device's device-info file;
        True once it has finished (or none runs)."""
        writer = self._prewriter
        if writer is not None:
            writer.join(timeout)
        return writer is None or not writer.is_alive()

    def _devinfo_path(self, dev_id: str) -> str:
        return self._devinfo_prefix + dev_id + DEVICE_INFO_SUFFIX  # device_info_file_name's, in our directory

    def _write_pending_device_info(self, ids: Sequence[str] | None = None) -> None:
        """Write the files of `ids` (default: all devices) not known to be current; a file removed
        behind our back is written again."""
        with self._cond:
            written, config, wanted = self._devinfo_written, self._pool.config, list(ids or self._devices)
        directory = self.out.devinfo_dir
        for start in range(0, len(wanted), 64):  # the lock is held per batch, never for a whole pool
            with self._cond:
                if self._stopping or written is not self._devinfo_written:
                    return  # stopping, or re-indexed: the new index has its own pass
                todo = [(i, self._devices[i], self._payload(i)) for i in wanted[start:start + 64]
                        if i in self._devices and not (i in written and os.path.exists(self._devinfo_path(i)))]
            if todo:
                files.write_device_info(directory, config, [(dev, payload) for _, dev, payload in todo])
                with self._cond:
                    written.update(i for i, _, _ in todo)

    def _list_response(self) -> pb.ListAndWatchResponse:
        exclude_topology = self._pool.config.exclude_topology
        devices = []
        for dev_id, dev in self._devices.items():
            msg = pb.Device(ID=dev_id, health=HEALTHY if self._health.get(dev_id, True) else UNHEALTHY)
            numa = dev.numa_node if isinstance(dev, PciDevice) else None
            if numa is not None and not exclude_topology:
                msg.topology.nodes.add(ID=numa)
            devices.append(msg)
        return pb.ListAndWatchResponse(devices=devices)

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="dp"),
                             options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
        pb_grpc.add_DevicePluginServicer_to_server(self, server)
        if self.watcher_mode:
            reg_grpc.add_RegistrationServicer_to_server(self, server)
        with self._cond:
            self._stopping = False
        try:
            self._socket_identity = grpcserve.serve_at(server, self.socket_path, f"device plugin socket of {self.name}")
        except BaseException:
            server.stop(0)
            raise
        self._grpc = server
        self.registered_with = None
        self.watcher_registered = False
        self._write_files()
        log.info("device plugin serving resource=%s socket=%s devices=%d", self.name, self.socket_path,
                 len(self._devices))

    def serving_at_its_path(self) -> bool:
        """Whether the socket file at our path is still the one we placed (a kubelet restart
        removes it)."""
        return unixsocket.SocketIdentity.of(self.socket_path) == self._socket_identity

    def stop(self, *, remove_files: bool = True) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._prewriter is not None:
            self._prewriter.join()  # before the files are removed: none written after
        if self._grpc is not None:
            self._grpc.stop(grace=0.5).wait(2)
            self._grpc = None
        unixsocket.remove_if_ours(self.socket_path, self._socket_identity)  # never another agent's socket
        self._socket_identity = None
        if remove_files:
            files.remove_device_info(self.out.devinfo_dir, self._pool.config)
            if self.out.cdi_dir is not None:
                files.remove_cdi_spec(self.out.cdi_dir, self._pool.config)
            if self.metrics is not None:
                self.metrics.forget_pool(self.name, list(self._devices))
        log.info("device plugin stopped resource=%s", self.name)

    def restart(self) -> None:
        """Our socket vanished (a kubelet restart wipes the directory): serve anew."""
        self.stop(remove_files=False)
        self.start()

    def register(self, kubelet_socket: Path) -> None:
        """Register with the kubelet's Registration service (raises grpc.RpcError)."""
        identity = _identity(kubelet_socket)
        with grpc.insecure_channel(f"unix:{kubelet_socket}") as channel:
            request = pb.RegisterRequest(
                version=API_VERSION, endpoint=self.socket_path.name, resource_name=self.name,
                options=pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True))
            pb_grpc.RegistrationStub(channel).Register(request, timeout=_REGISTER_TIMEOUT)
        self.registered_with = identity
        log.info("registered with kubelet resource=%s endpoint=%s", self.name, self.socket_path.name)

    # -- DevicePlugin service ---------------------------------------------------------
    def GetDevicePluginOptions(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)

    def ListAndWatch(self, request: pb.Empty, context: grpc.ServicerContext) -> Iterator[pb.ListAndWatchResponse]:
        with self._cond:
            self.kubelet_streams += 1
        if not context.add_callback(self._stream_closed):  # the call already ended
            self._stream_closed()
        sent = -1
        while context.is_active():
            with self._cond:
                if self._version == sent and not self._stopping:
                    self._cond.wait(_STREAM_WAKEUP)
                if self._stopping:
                    return
                if self._version == sent:
                    continue
                sent = self._version
                response = self._list_response()
            yield response

    def _stream_closed(self) -> None:
        with self._cond:
            self.kubelet_streams -= 1

    @property
    def kubelet_connected(self) -> bool:
        """The kubelet is watching this pool (a kubelet that died left its socket file but no stream)."""
        return self.kubelet_streams > 0

    def GetPreferredAllocation(self, request: pb.PreferredAllocationRequest,
                               context: grpc.ServicerContext) -> pb.PreferredAllocationResponse:
        with self._cond:
            known = set(self._devices)
            placements = {i: _placement(d) for i, d in self._devices.items() if self._health.get(i, True)}
            policy = self._pool.config.allocate_policy
        held = self._held_now()
        responses = []
        for n, req in enumerate(request.container_requests):
            available, must_include = list(req.available_deviceIDs), list(req.must_include_deviceIDs)
            try:
                requests.check_preferred(available, must_include, req.allocation_size, known, self.name, n)
            except requests.DeviceRequestError as exc:
                self._refuse(context, "preferred allocation", exc)
            responses.append(pb.ContainerPreferredAllocationResponse(deviceIDs=preferred_allocation(
                available, must_include, req.allocation_size, placements, policy, held)))
        return pb.PreferredAllocationResponse(container_responses=responses)

    def _held_now(self) -> Collection[str]:
        """What `held` says; nothing when it cannot say (a preference, never a refusal)."""
        if self.held is None:
            return frozenset()
        try:
            return self.held()
        except (OSError, SriovkitError) as exc:
            log.warning("preferred allocation for %s: cannot tell which devices are still attached: %s",
                        self.name, exc)
            return frozenset()

    def Allocate(self, request: pb.AllocateRequest, context: grpc.ServicerContext) -> pb.AllocateResponse:
        containers = [tuple(req.devices_ids) for req in request.container_requests]
        try:
            with self._cond:
                known = self._devices  # replaced, never changed in place: no copy per call
            requests.check_allocate(containers, known, self.name)
            answers = [self._allocate_message(ids) for ids in containers]
        except (UnknownDeviceError, requests.DeviceRequestError) as exc:
            self._refuse(context, "allocate", exc)
        return pb.AllocateResponse(container_responses=answers)

    def _refuse(self, context: grpc.ServicerContext, what: str, exc: Exception) -> NoReturn:
        log.warning("%s refused resource=%s: %s", what, self.name, exc)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise exc  # abort raises; this keeps type checkers and readers honest

    def allocate(self, ids: Sequence[str]) -> ContainerAllocation:
        """One container's answer for `ids` (checked: known, healthy), their device-info files
        written if they are not yet, the allocation counted and logged."""
        with self._cond:
            payloads = [self._payload_for(i) for i in ids]
            config = self._pool.config
        self._allocated(ids)
        return container_allocation(config, payloads, use_cdi=self.out.cdi_dir is not None)

    def _allocate_message(self, ids: tuple[str, ...]) -> pb.ContainerAllocateResponse:
        """`allocate(ids)` as the wire message, built once per device list and index: the
        kubelet waits on Allocate at every pod start, and the answer only changes with the pool."""
        with self._cond:
            payloads = [self._payload_for(i) for i in ids]  # known and healthy now, cached or not
            config, answers = self._pool.config, self._answers
        self._allocated(ids)
        message = answers.get(ids)
        if message is None:
            message = _to_message(container_allocation(config, payloads, use_cdi=self.out.cdi_dir is not None))
            if len(answers) >= _ANSWER_CACHE_MAX:
                answers.clear()
            answers[ids] = message
        return message

    def _allocated(self, ids: Sequence[str]) -> None:
        written = self._devinfo_written  # replaced on a new index, never shrunk
        if not all(i in written and os.path.exists(self._devinfo_path(i)) for i in ids):
            self._write_pending_device_info(ids)  # written ahead already, unless asked for first or removed
        if self.metrics is not None:
            self.metrics.count_allocations(self.name, len(ids))
        log.info("allocate resource=%s devices=%s", self.name, ",".join(ids))

    def _payload_for(self, dev_id: str) -> DevicePayload:
        payload = self._payload(dev_id)
        if payload is None:
            raise UnknownDeviceError(f"device {requests.shown(dev_id)} is not in resource {self.name}")
        if not self._health.get(dev_id, True):
            raise UnknownDeviceError(f"device {requests.shown(dev_id)} of resource {self.name} is unhealthy")
        return payload

    def PreStartContainer(self, request: pb.PreStartContainerRequest,
                          context: grpc.ServicerContext) -> pb.PreStartContainerResponse:
        return pb.PreStartContainerResponse()

    # -- pluginregistration service (plugin-watcher mode) ------------------------------
    def GetInfo(self, request: reg_pb.InfoRequest, context: grpc.ServicerContext) -> reg_pb.PluginInfo:
        return reg_pb.PluginInfo(type=DEVICE_PLUGIN_TYPE, name=self.name, endpoint=str(self.socket_path),
                                 supported_versions=[API_VERSION])

    def NotifyRegistrationStatus(self, request: reg_pb.RegistrationStatus,
                                 context: grpc.ServicerContext) -> reg_pb.RegistrationStatusResponse:
        self.watcher_registered = bool(request.plugin_registered)
        if request.plugin_registered:
            log.info("registered through plugin watcher resource=%s", self.name)
        else:
            log.error("kubelet refused registration resource=%s error=%s", self.name, request.error)
        return reg_pb.RegistrationStatusResponse()


def _placement(dev: Device) -> Placement:
    if isinstance(dev, PciDevice):
        return Placement(dev.numa_node, dev.pf_address)
    return Placement(None, dev.parent_address)


def _to_message(answer: ContainerAllocation) -> pb.ContainerAllocateResponse:
    return pb.ContainerAllocateResponse(
        envs=answer.envs,
        devices=[pb.DeviceSpec(container_path=n.container_path, host_path=n.host_path, permissions=n.permissions)
                 for n in answer.devices],
        annotations=answer.annotations,
        cdi_devices=[pb.CDIDevice(name=n) for n in answer.cdi_devices],
    )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_ctime_ns)


def kubelet_identity(path: Path) -> tuple[int, int] | None:
    """Which kubelet.sock is there (None: none): a new inode means the kubelet restarted."""
    return _identity(path)
