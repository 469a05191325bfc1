"""Runs one `PoolServer` per resource pool and keeps them in step with the node.

A single watcher thread polls what cannot be watched otherwise, every
``poll_interval`` (0.25 s by default, so any change reaches ListAndWatch well
within a second):

- the config file (inode, size, mtime of the path *and* of its resolved
  target, so Kubernetes' ConfigMap ``..data`` symlink swap is seen);
- each PF's ``sriov_numvfs`` (VFs appearing or vanishing);
- the operstate of every interface that decides a device's health;
- each server's socket (removed: serve again) and ``kubelet.sock`` (a new
  one: the kubelet restarted, register again).

A full rediscovery also runs every ``resync_interval`` as a safety net (a
driver rebind changes pools without changing VF counts).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from sriovkit import nodepaths, unixsocket
from sriovkit.cni.pools import publish_pools, withdraw_pools
from sriovkit.deviceplugin import health as hl
from sriovkit.deviceplugin.metrics import PoolMetrics
from sriovkit.deviceplugin.payload import RDMA_CM, HostDevNodes
from sriovkit.deviceplugin.server import KUBELET_SOCKET, PoolServer, ServerFiles, kubelet_identity, socket_name
from sriovkit.filestamp import FileStamp
from sriovkit.host.discover import discover
from sriovkit.host.model import HostSnapshot
from sriovkit.host.routes import default_route_netdevs
from sriovkit.host.sysfs import Sysfs
from sriovkit.resources.config import DEFAULT_RESOURCE_PREFIX, ConfigError, ResourceList, ServedBy, load_config_file
from sriovkit.resources.pools import ResourcePool, build_pools
from sriovkit.resources.selectors import device_id

log = logging.getLogger(__name__)

DEFAULT_DEVICE_PLUGIN_DIR = Path(nodepaths.DEVICE_PLUGIN_DIR)
DEFAULT_PLUGINS_REGISTRY_DIR = Path(nodepaths.PLUGINS_REGISTRY_DIR)
DEFAULT_DEVINFO_DIR = Path(nodepaths.DEVINFO_DIR)
DEFAULT_CDI_DIR = Path(nodepaths.CDI_DIR)
_SETTLE_STEPS = 6
_SETTLE_INTERVAL = 0.5
_MIN_POLL_GAP = 0.05


@dataclass(frozen=True, slots=True)
class DevicePluginSettings:
    config_file: Path
    resource_prefix: str = DEFAULT_RESOURCE_PREFIX
    sysfs: Sysfs = field(default_factory=Sysfs)
    proc_root: str = "/proc"
    device_plugin_dir: Path = DEFAULT_DEVICE_PLUGIN_DIR
    # set: register through the kubelet's plugin watcher (socket in this dir) instead of kubelet.sock
    plugins_registry_dir: Path | None = None
    devinfo_dir: Path = DEFAULT_DEVINFO_DIR
    use_cdi: bool = False
    cdi_dir: Path = DEFAULT_CDI_DIR
    poll_interval: float = 0.25
    resync_interval: float = 30.0
    netlink_events: bool = False  # wake on kernel link events (real hosts)
    strict_config: bool = False  # refuse what upstream ignores in config.json (unknown fields ...) instead of warning
    pools_file: Path | None = None  # publish every pool's devices here for the CNI's own picks (sriovkit.cni.pools)
    # the device IDs a CNI attachment holds now: GetPreferredAllocation offers them last (a pod's
    # sandbox is torn down after the kubelet already offers its devices again)
    held_devices: Callable[[], Collection[str]] | None = None


class DevicePluginManager:
    """Owns the pool servers. `start()` fails with `ConfigError` on a bad config;
    later reloads with a bad config keep the running one."""

    def __init__(self, settings: DevicePluginSettings, *, metrics: PoolMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.servers: dict[str, PoolServer] = {}
        self.resources: ResourceList | None = None
        self.snapshot: HostSnapshot | None = None
        # pools of resources not served through the device plugin (servedBy dra or none): the
        # DRA driver reads these; a VF is in one pool only, so never offered both ways
        self.other_pools: dict[str, ResourcePool] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._link_events: hl.KernelLinkEvents | None = None
        self._config_stamp: FileStamp | None = None
        self._vf_counts: dict[str, int | None] = {}
        self._link_up: dict[str, bool] = {}
        self._since_resync = 0.0
        self._register_errors: dict[str, str] = {}  # last registration problem said, per resource
        self._settle_left = 0  # rediscoveries still due after a VF count change
        self._since_settle = 0.0
        self.on_change: Callable[[], None] | None = None  # called after pools or health changed
        # device ID -> resource holding it whatever its selectors say (the DRA driver's prepared claims)
        self.pinned: Callable[[], Mapping[str, str]] | None = None
        self._warned_dra: list[str] = []
        # the config file on disk was rejected (the previous config keeps running): why, for /readyz
        self.config_problem: str | None = None
        self.on_reload_failure: Callable[[str], None] | None = None  # called with the one-line problem
        if metrics is not None:
            metrics.registration = self.registration

    # -- lifecycle -------------------------------------------------------------------
    @property
    def watcher_mode(self) -> bool:
        return self.settings.plugins_registry_dir is not None

    @property
    def socket_dir(self) -> Path:
        return self.settings.plugins_registry_dir or self.settings.device_plugin_dir

    @property
    def kubelet_socket(self) -> Path:
        return self.settings.device_plugin_dir / KUBELET_SOCKET

    def start(self) -> None:
        self._config_stamp = FileStamp.of(self.settings.config_file)
        self.resources = self._load_config()
        self.config_problem = None
        if self.metrics is not None:
            self.metrics.config_loaded(ok=True, reload=False)
        with self._lock:
            try:
                self._rediscover()
            except BaseException:
                self._stop_servers()  # a socket that failed to bind must not leave the others behind
                raise
            self._register_all()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch_loop, name="dp-watch", daemon=True)
        self._thread.start()
        if self.settings.netlink_events:
            self._link_events = hl.KernelLinkEvents(self._wake, lambda: self._link_up)  # its keys
            self._link_events.start()

    def check_conflicts(self) -> None:
        """Before anything starts: raise SocketInUseError when another process serves on the socket
        of a pool we would serve (another agent). Changes nothing; a config that does not load is
        left for `start` to report."""
        try:  # quietly: start() loads it again and says what it warns about
            resources = load_config_file(self.settings.config_file, default_prefix=self.settings.resource_prefix,
                                         strict=self.settings.strict_config)
        except ConfigError:
            return
        pools = build_pools(discover(self.settings.sysfs), resources,
                            default_route_netdevs=default_route_netdevs(self.settings.proc_root))
        for pool in pools.pools:
            unixsocket.check_free(self.socket_dir / socket_name(pool.name), f"device plugin socket of {pool.name}")

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._link_events is not None:
            self._link_events.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._stop_servers()
        if self.settings.pools_file is not None:
            withdraw_pools(self.settings.pools_file)

    def _stop_servers(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def pools(self) -> dict[str, ResourcePool]:
        with self._lock:
            return {name: s.pool for name, s in self.servers.items()}

    def health(self) -> dict[str, dict[str, bool]]:
        with self._lock:
            return {name: s.health() for name, s in self.servers.items()}

    def device_info_prewritten(self, timeout: float = 10.0) -> bool:
        """True once every pool's start-up pass writing its device-info files has finished
        (each waited for up to `timeout`)."""
        with self._lock:
            servers = list(self.servers.values())
        return all(server.device_info_prewritten(timeout) for server in servers)

    # -- the watch loop ----------------------------------------------------------------
    def _watch_loop(self) -> None:
        interval = self.settings.poll_interval
        last = time.monotonic()
        while not self._stopping.is_set():
            self._wake.wait(interval)  # a netlink link event ends the wait early
            self._wake.clear()
            if self._stopping.is_set():
                return
            # a node busy with pod veths sends link events all the time: keep a floor
            gap = _MIN_POLL_GAP - (time.monotonic() - last)
            if gap > 0 and self._stopping.wait(gap):
                return
            now = time.monotonic()
            elapsed, last = now - last, now
            try:
                self.poll_once(elapsed=elapsed)
            except Exception:  # the loop must survive anything; the next tick resyncs
                log.exception("device plugin watch iteration failed; retrying")
                self._since_resync = self.settings.resync_interval

    def poll_once(self, *, elapsed: float = 0.0) -> None:
        """One watch iteration: reload, rediscover, re-health, re-serve, re-register as needed."""
        with self._lock:
            self._since_resync += elapsed
            changed = self._check_config()
            counts = hl.read_vf_counts(self.settings.sysfs, self._vf_counts)
            counts_changed = counts != self._vf_counts
            if counts_changed:
                self._settle_left = _SETTLE_STEPS
            due = self._since_resync >= self.settings.resync_interval
            if changed or counts_changed or due or self._settling(elapsed):
                self._rediscover()
            elif self._check_links():
                self._publish_all()
            self._check_sockets()
            self._register_all()

    def _settling(self, elapsed: float) -> bool:
        # New VFs get their driver, interface and RDMA device after sriov_numvfs
        # changes (the kernel probes them, udev renames them): look again a few
        # times so the pools settle on what the VFs finally are.
        if self._settle_left <= 0:
            return False
        self._since_settle += elapsed
        if self._since_settle < _SETTLE_INTERVAL:
            return False
        self._since_settle = 0.0
        self._settle_left -= 1
        return True

    def _check_config(self) -> bool:
        stamp = FileStamp.of(self.settings.config_file)
        if stamp == self._config_stamp:
            return False
        self._config_stamp = stamp
        try:
            self.resources = self._load_config()
        except ConfigError as exc:
            problems = "; ".join(exc.problems)
            log.error("config reload failed, keeping the running config: %s", problems)
            self.config_problem = problems
            if self.metrics is not None:
                self.metrics.config_loaded(ok=False)
            if self.on_reload_failure is not None:
                self.on_reload_failure(problems)
            return False
        log.info("config reloaded file=%s resources=%d", self.settings.config_file, len(self.resources.resources))
        self.config_problem = None
        if self.metrics is not None:
            self.metrics.config_loaded(ok=True)
        return True

    def _load_config(self) -> ResourceList:
        resources = load_config_file(self.settings.config_file, default_prefix=self.settings.resource_prefix,
                                     strict=self.settings.strict_config)
        for line in resources.warnings:  # upstream runs on these silently: say so, once per load
            log.warning("config: %s", line)
        if resources.warnings and self.metrics is not None:
            self.metrics.count_config_warnings("config.json", len(resources.warnings))
        return resources

    def _check_links(self) -> bool:
        states = hl.read_link_states(self.settings.sysfs, self._link_up)
        if states == self._link_up:
            return False
        self._link_up = states
        return True

    def _check_sockets(self) -> None:
        for server in self.servers.values():
            if not server.serving_at_its_path():
                log.warning("socket removed, serving again resource=%s socket=%s", server.name, server.socket_path)
                server.restart()

    def registration(self) -> dict[str, bool]:
        """Per resource: registered with the kubelet running now. Lock-free (a copy of the servers):
        /readyz must answer within the probe's timeout while a registration is under way."""
        servers = dict(self.servers)
        if self.watcher_mode:
            return {name: s.watcher_registered and s.kubelet_connected for name, s in servers.items()}
        identity = kubelet_identity(self.kubelet_socket)
        return {name: identity is not None and s.registered_with == identity and s.kubelet_connected
                for name, s in servers.items()}

    def readiness_problems(self) -> list[str]:
        """Why this node's pools are not usable, one line each; [] when they are."""
        if self.resources is None or self._thread is None or self._stopping.is_set():
            return ["device plugins: not running"]
        problems = []
        if self.config_problem is not None:
            problems.append(f"config {self.settings.config_file}: rejected, the previous config is running: "
                            f"{self.config_problem}")
        if not self.watcher_mode and kubelet_identity(self.kubelet_socket) is None:
            problems.append(f"kubelet: no {self.kubelet_socket}")
        errors = dict(self._register_errors)
        for name, ok in sorted(self.registration().items()):
            if not ok:
                why = f": {errors[name]}" if name in errors else " (or the kubelet is not watching it)"
                problems.append(f"resource {name}: not registered with the kubelet{why}")
        return problems

    def _register_all(self) -> None:
        if self.watcher_mode:
            return
        identity = kubelet_identity(self.kubelet_socket)
        if identity is None:
            self._note_waiting(f"waiting for {self.kubelet_socket}")
            return
        for server in self.servers.values():
            if server.registered_with != identity:
                try:
                    server.register(self.kubelet_socket)
                    self._register_errors.pop(server.name, None)
                except grpc.RpcError as exc:
                    self._note_register_error(server.name, exc)

    def _note_waiting(self, message: str) -> None:
        # retried every poll: say it once, not four times a second
        if self._register_errors.get("") != message:
            self._register_errors[""] = message
            log.info("%s before registering", message)

    def _note_register_error(self, name: str, exc: grpc.RpcError) -> None:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        message = f"{getattr(code, 'name', code)}: {details}"
        if self._register_errors.get(name) != message:
            self._register_errors[name] = message
            log.warning("registration failed resource=%s: %s; retrying", name, message)

    # -- pools --------------------------------------------------------------------------
    def _rediscover(self) -> None:
        assert self.resources is not None
        sysfs = self.settings.sysfs
        self._since_resync = 0.0
        snapshot = discover(sysfs)
        self.snapshot = snapshot
        pool_set = build_pools(snapshot, self.resources,
                               default_route_netdevs=default_route_netdevs(self.settings.proc_root),
                               pinned=self.pinned() if self.pinned is not None else None)
        self._vf_counts = hl.read_vf_counts(sysfs, hl.sriov_pfs(snapshot))
        netdevs = {n for p in pool_set.pools for d in p.devices if (n := hl.link_netdev(d)) is not None}
        self._link_up = hl.read_link_states(sysfs, netdevs)
        pools = pool_set.by_name()
        self.other_pools = {n: p for n, p in pools.items() if p.config.served_by is not ServedBy.DEVICE_PLUGIN}
        self._warn_unserved_dra()
        if self.settings.pools_file is not None:  # before any server offers them, so no pick races a pool
            publish_pools(self.settings.pools_file, {n: p.device_ids for n, p in pools.items()
                                                     if p.config.served_by is not ServedBy.NONE})
        self._apply({n: p for n, p in pools.items() if n not in self.other_pools})

    def _warn_unserved_dra(self) -> None:
        # servedBy dra without a DRA driver attached (the agent runs without --dra): say so once
        unserved = sorted(n for n, p in self.other_pools.items()
                          if p.config.served_by is ServedBy.DRA and self.pinned is None)
        if unserved and unserved != self._warned_dra:
            log.warning("resources %s say servedBy dra but the agent runs without --dra: nothing offers them",
                        ",".join(unserved))
        self._warned_dra = unserved

    def _apply(self, pools: dict[str, ResourcePool]) -> None:
        """Start, stop or update only the servers whose pools changed."""
        for name in [n for n in self.servers if n not in pools]:
            self.servers.pop(name).stop()
        host = self._host_nodes()
        for name, pool in pools.items():
            health = self._pool_health(pool)
            server = self.servers.get(name)
            if server is None:
                server = PoolServer(pool, health, socket_dir=self.socket_dir, host=host, out=self._files(),
                                    watcher_mode=self.watcher_mode, metrics=self.metrics,
                                    held=self.settings.held_devices)
                server.start()
                self.servers[name] = server
            elif server.pool != pool or server.health() != health or server.host != host:
                server.publish(pool, health, host=host)
                log.info("pool updated resource=%s devices=%d unhealthy=%d", name, len(pool.devices),
                         sum(1 for ok in health.values() if not ok))
        if self.on_change is not None:
            self.on_change()

    def _publish_all(self) -> None:
        for server in self.servers.values():
            health = self._pool_health(server.pool)
            if health != server.health():
                down = sorted(i for i, ok in health.items() if not ok)
                log.info("health changed resource=%s unhealthy=%s", server.name, ",".join(down) or "-")
                server.publish(server.pool, health)
        if self.on_change is not None:
            self.on_change()

    def _pool_health(self, pool: ResourcePool) -> dict[str, bool]:
        return {device_id(d): hl.is_healthy(d, self._link_up) for d in pool.devices}

    def pool_health(self, pool: ResourcePool) -> dict[str, bool]:
        """Device ID -> healthy, by the same rule as the device plugin's (the PF's link)."""
        with self._lock:
            return self._pool_health(pool)

    def _host_nodes(self) -> HostDevNodes:
        sysfs = self.settings.sysfs
        vhost = self.snapshot.vhost_net if self.snapshot is not None else False
        return HostDevNodes(vhost_net=vhost, rdma_cm=os.path.exists(sysfs.dev_path(RDMA_CM)))

    def _files(self) -> ServerFiles:
        cdi = self.settings.cdi_dir if self.settings.use_cdi else None
        return ServerFiles(devinfo_dir=self.settings.devinfo_dir, cdi_dir=cdi)
