"""The DRA driver as an agent component: wires the pools, the claim preparer, the kubelet-side
server and the ResourceSlice publisher.

It reads the device-plugin manager's pool set (one discovery for both), takes the pools whose
resource says ``servedBy: dra``, and is called back whenever pools or health change: the slices
are republished and the kubelet's health streams get the new state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sriovkit import nodepaths
from sriovkit.cni.context import DriverBinder
from sriovkit.cni.faults import FaultHook
from sriovkit.deviceplugin.manager import DevicePluginManager
from sriovkit.dra.checkpoint import Checkpoint
from sriovkit.dra.inventory import DraDevice, dra_devices, served_by
from sriovkit.dra.kube import DraApi
from sriovkit.dra.netstatus import ClaimNetworkStatus
from sriovkit.dra.prepare import ClaimPreparer, PreparedDevice, PrepareSettings
from sriovkit.dra.publisher import SlicePublisher
from sriovkit.dra.server import ClaimHandler, DeviceHealth, DraPluginServer
from sriovkit.dra.slices import VfFacts, build_slices
from sriovkit.resources.config import ServedBy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DraSettings:
    node_name: str
    driver_name: str = nodepaths.DRA_DRIVER_NAME
    plugins_registry_dir: Path = Path(nodepaths.PLUGINS_REGISTRY_DIR)
    plugins_dir: Path = Path(nodepaths.KUBELET_PLUGINS_DIR)
    state_dir: Path = Path(nodepaths.DRA_STATE_DIR)
    cdi_dir: Path = Path(nodepaths.CDI_DIR)
    devinfo_dir: Path = Path(nodepaths.DEVINFO_DIR)
    node_root: Path = Path("/")  # the node's root as the container runtime sees it (CDI host paths)
    taint_unhealthy: bool = False  # withdraw unhealthy VFs (default) or publish them with a taint
    socket_check_s: float = 1.0
    fault_hook: FaultHook | None = None  # tests only (sriovkit.cni.faults); never set on a real node


class DraDriver:
    def __init__(self, settings: DraSettings, manager: DevicePluginManager, api: DraApi | None, *,
                 drivers: DriverBinder) -> None:
        self.settings = settings
        self.manager = manager
        self.api = api
        self._lock = threading.Lock()
        self._devices: dict[tuple[str, str], DraDevice] = {}
        sysfs = manager.settings.sysfs
        self.preparer = ClaimPreparer(
            PrepareSettings(settings.driver_name, settings.cdi_dir, settings.devinfo_dir, sysfs,
                            node_root=settings.node_root, fault_hook=settings.fault_hook),
            Checkpoint(settings.state_dir), drivers, self.devices)
        self.server = DraPluginServer(settings.driver_name, registry_dir=settings.plugins_registry_dir,
                                      plugins_dir=settings.plugins_dir,
                                      handler=ClaimHandler(self._prepare, self.preparer.unprepare),
                                      health=self.health)
        self.publisher = (SlicePublisher(api, settings.node_name, settings.driver_name, self.slices)
                          if api is not None else None)
        # networkData in the claims' status after the agent's CNI attached their VFs (cni_observer)
        self.network_status = (ClaimNetworkStatus(api, settings.driver_name, self.preparer.checkpoint)
                               if api is not None else None)
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None
        # set now, before the agent starts the manager: its first pools already keep held VFs
        manager.pinned = self._pinned

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        previous = self.manager.on_change

        def on_change() -> None:
            if previous is not None:
                previous()
            self.refresh()

        self.manager.on_change = on_change
        self.manager.poll_once(elapsed=self.manager.settings.resync_interval)  # pools with the claims pinned
        self.refresh()
        self.server.start()
        if self.publisher is not None:
            # a kubelet that (re)started deletes its node's ResourceSlices of drivers it does not
            # know yet: publish again as soon as it knows us, not at the next resync
            self.server.on_registered = self.publisher.trigger
            self.publisher.start()
        if self.network_status is not None:
            self.network_status.start()
        self._stopping.clear()
        self._watch = threading.Thread(target=self._watch_sockets, name="dra-sockets", daemon=True)
        self._watch.start()

    def cni_observer(self, env: Mapping[str, str], stdin: bytes, stdout: bytes, code: int) -> None:
        """For the agent's CNI service: after each call, a claimed VF's networkData (netstatus)."""
        if self.network_status is not None:
            self.network_status.observe(env, stdin, stdout, code)

    def check_conflicts(self) -> None:
        """Before anything starts: refuse (SocketInUseError) when another process serves our sockets."""
        self.server.check_conflicts()

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.join(timeout=5)
        if self.publisher is not None:
            self.publisher.stop()
        if self.network_status is not None:
            self.network_status.stop()
        self.server.stop()

    def _watch_sockets(self) -> None:
        # a socket removed under us (a kubelet reinstall, an operator's cleanup): serve again
        while not self._stopping.wait(self.settings.socket_check_s):
            if not self.server.sockets_present():
                log.warning("DRA sockets removed, serving again")
                self.server.stop()
                try:
                    self.server.start()
                except OSError as exc:  # e.g. another process now serves there: never taken over
                    log.error("DRA driver cannot serve again: %s; retrying", exc)

    def readiness_problems(self) -> list[str]:
        """For /readyz: the kubelet has not accepted the driver, or the slices are not published."""
        name, server = self.settings.driver_name, self.server
        problems = []
        if server.registered is None:
            problems.append(f"DRA driver {name}: not registered with the kubelet yet ({server.registration_path})")
        elif not server.registered:
            problems.append(f"DRA driver {name}: the kubelet refused the registration: {server.registration_error}")
        if self.publisher is not None and self.publisher.last_error is not None:
            problems.append(f"DRA driver {name}: ResourceSlices not published: {self.publisher.last_error}")
        elif self.publisher is not None and self.publisher.syncs == 0:
            problems.append(f"DRA driver {name}: ResourceSlices not published yet")
        return problems

    # -- state -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Pools or health changed (called with the manager's lock held: no API calls here)."""
        manager = self.manager
        snapshot = manager.snapshot
        if snapshot is None:
            return
        pools = served_by(manager.other_pools, ServedBy.DRA)
        health: dict[str, bool] = {}
        for pool in pools.values():
            health.update(manager.pool_health(pool))
        devices = dra_devices(self.settings.node_name, snapshot, pools.values(), health, manager.settings.sysfs)
        # a held VF is published as it was when prepared (a vfio-pci bind hides its RDMA device and
        # interface; the slice must not change because a pod uses the VF)
        held = self.preparer.held()
        for key, dev in list(devices.items()):
            record = held.get(dev.facts.pci_address)
            if record is not None and isinstance(record.get("facts"), dict):
                with contextlib.suppress(TypeError):
                    devices[key] = dataclasses.replace(dev, facts=VfFacts(**record["facts"]))
        with self._lock:
            changed = devices != self._devices
            self._devices = devices
        if changed:
            log.info("DRA devices=%d unhealthy=%d", len(devices), sum(1 for d in devices.values() if not d.healthy))
            self.server.health_changed()
            if self.publisher is not None:
                self.publisher.trigger()

    def _pinned(self) -> dict[str, str]:
        return {pci: str(d.get("resource", "")) for pci, d in self.preparer.held().items()}

    def devices(self) -> Mapping[tuple[str, str], DraDevice]:
        with self._lock:
            return dict(self._devices)

    def health(self) -> list[DeviceHealth]:
        return [DeviceHealth(pool, name, d.healthy) for (pool, name), d in sorted(self.devices().items())]

    def slices(self, generations: dict[str, int]) -> list[dict[str, Any]]:
        devices = self.devices().values()
        return build_slices(self.settings.node_name, self.settings.driver_name, [d.facts for d in devices],
                            {d.facts.pci_address: d.healthy for d in devices}, generations=generations,
                            taint_unhealthy=self.settings.taint_unhealthy)

    def _prepare(self, namespace: str, name: str, uid: str) -> list[PreparedDevice]:
        def fetch() -> dict[str, Any]:
            if self.api is None:
                from sriovkit.dra.claimconfig import ClaimError

                raise ClaimError(f"claim {namespace}/{name}: no API server configured to read it from")
            return self.api.get_claim(namespace, name)

        return self.preparer.prepare(uid, fetch)


