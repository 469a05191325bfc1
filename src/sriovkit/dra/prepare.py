"""Prepare and unprepare claims on the node: bind drivers, write CDI specs and device-info files,
and undo exactly that.

Driver binding follows the CNI's rules: the VF's original driver is recorded before the first
change; a failure later in prepare undoes every earlier step in reverse; unprepare rebinds the
kernel's default driver first (clearing the driver_override the bind left) and pins the original
by name only when the default is not what it had.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sriovkit.cni.context import DriverBinder
from sriovkit.cni.faults import FaultHook, FaultPoints
from sriovkit.deviceplugin import files
from sriovkit.deviceplugin.payload import (
    CDI_VERSION,
    RDMA_CM,
    DeviceNode,
    DevicePayload,
    HostDevNodes,
    cdi_device,
    claim_payload,
    device_info_file_name,
    env_name,
    info_json,
)
from sriovkit.dra.checkpoint import Checkpoint, ClaimRecord, PreparedVf
from sriovkit.dra.claimconfig import DEFAULT_DRIVER, AllocatedDevice, ClaimError, allocated_devices, reserved_pod_uid
from sriovkit.dra.inventory import DraDevice
from sriovkit.host.discover import discover_device
from sriovkit.host.model import USERSPACE_DRIVERS, PciDevice
from sriovkit.host.sysfs import Sysfs
from sriovkit.resources.config import ResourceConfig

log = logging.getLogger(__name__)

# a claim's CDI spec has a class of its own (its devices are named after the VFs' PCI addresses,
# unique within the class even when adminAccess lets two claims hold one VF)
CDI_CLASS_PREFIX = "claim-"
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
_RDMA_ENV = (("uverbs", "RDMA_UVERB"), ("umad", "RDMA_UMAD"), ("issm", "RDMA_ISSM"), ("rdma_cm", "RDMA_CM"))


@dataclass(frozen=True, slots=True)
class PreparedDevice:
    request: str
    pool: str
    device: str
    cdi_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PrepareSettings:
    driver_name: str
    cdi_dir: Path
    devinfo_dir: Path
    sysfs: Sysfs
    node_root: Path = Path("/")  # the node's root as the container runtime sees it (CDI host paths)
    # tests only (sriovkit.cni.faults): stop dead after a step; never set on a real node
    fault_hook: FaultHook | None = None


def cdi_kind(driver_name: str, uid: str) -> str:
    return f"{driver_name}/{CDI_CLASS_PREFIX}{uid}"


def cdi_id(driver_name: str, uid: str, pci_address: str) -> str:
    """A VF's CDI device ID: ``<driver>/claim-<claim uid>=<PCI address>``. The part after '=' is
    what Multus 4.x takes from the kubelet's podresources as the network's ``deviceID`` (its
    getDRAResources), so the CNI is handed the VF's PCI address as with the device plugin."""
    return f"{cdi_kind(driver_name, uid)}={pci_address}"


def _env_key(device_name: str) -> str:
    return device_name.replace("-", "_")


class ClaimPreparer:
    """Thread-safe: one claim at a time (the kubelet may call for several pods at once)."""

    def __init__(self, settings: PrepareSettings, checkpoint: Checkpoint, binder: DriverBinder,
                 inventory: Callable[[], Mapping[tuple[str, str], DraDevice]]) -> None:
        self.settings = settings
        self.checkpoint = checkpoint
        self.binder = binder
        self.inventory = inventory
        self._lock = threading.Lock()

    # -- prepare ----------------------------------------------------------------------------
    def prepare(self, uid: str, fetch: Callable[[], Mapping[str, Any]]) -> list[PreparedDevice]:
        """Idempotent: a claim prepared before (by this agent or an earlier one) answers the same,
        without asking the API server; otherwise `fetch` reads the claim."""
        with self._lock:
            record = self.checkpoint.get(uid)
            if record is not None and record.get("complete"):
                return _answer(record)
            claim = fetch()
            if record is not None:
                log.warning("claim %s: undoing an interrupted prepare first", uid)
                self._undo(record)
                self.checkpoint.delete(uid)
            record = self._plan(uid, claim)
            faults = FaultPoints(self.settings.fault_hook)
            self.checkpoint.put(uid, record)  # before the first change: a crash leaves what to undo
            faults.reached("dra journal")
            try:
                self._apply(record, faults)
            except BaseException:
                self._undo(record)
                self.checkpoint.delete(uid)
                raise
            record["complete"] = True
            self.checkpoint.put(uid, record)
            faults.reached("dra complete")
            log.info("claim %s/%s prepared uid=%s devices=%s", record["namespace"], record["name"], uid,
                     ",".join(d["device"] for d in record["devices"]))
            return _answer(record)

    def _plan(self, uid: str, claim: Mapping[str, Any]) -> ClaimRecord:
        if not _UID.match(uid):  # it names our CDI spec file: nothing that could leave cdi_dir
            raise ClaimError(f"claim uid {uid!r}: not a Kubernetes UID")
        meta = claim.get("metadata") or {}
        ref = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        if meta.get("uid") != uid:
            raise ClaimError(f"claim {ref}: metadata.uid is {meta.get('uid')!r}, the kubelet asked for {uid!r}")
        driver = self.settings.driver_name
        allocated = allocated_devices(claim, driver=driver, group=driver)
        inventory = self.inventory()
        devices = []
        for alloc in allocated:
            offered = inventory.get((alloc.pool, alloc.device))
            if offered is None:
                raise ClaimError(f"claim {ref}: device {alloc.pool}/{alloc.device} is not offered by this node "
                                 f"(gone, or not a DRA-served VF)")
            holders = [h for h in self.checkpoint.holders(offered.facts.pci_address) if h != uid]
            if holders and not alloc.admin_access:
                raise ClaimError(f"claim {ref}: device {alloc.device} is already prepared for claim {holders[0]}")
            devices.append(self._device_plan(alloc, offered, uid))
        return {"uid": uid, "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                "pod_uid": reserved_pod_uid(claim), "complete": False, "devices": devices,
                "cdi_spec": str(self._cdi_spec_path(uid))}

    def _device_plan(self, alloc: AllocatedDevice, offered: DraDevice, uid: str) -> PreparedVf:
        pci = offered.facts.pci_address
        current = discover_device(self.settings.sysfs, pci).driver
        wanted = _wanted_driver(alloc.config.driver, current)
        # one CDI device per VF and nothing else: Multus counts every CDI ID of the claim as a
        # deviceID, so a claim-wide device would be handed to a network as if it were a VF
        cdi_ids = [cdi_id(self.settings.driver_name, uid, pci)]
        return {"request": alloc.request, "pool": alloc.pool, "device": alloc.device, "pci": pci,
                "resource": offered.resource.full_name, "facts": dataclasses.asdict(offered.facts),
                "original_driver": current,
                "bound_driver": wanted if wanted != current else None,
                "config": alloc.config.to_json(), "cdi_ids": cdi_ids,
                "devinfo": str(self.settings.devinfo_dir / device_info_file_name(offered.resource, pci))}

    def _apply(self, record: ClaimRecord, faults: FaultPoints) -> None:
        sysfs = self.settings.sysfs
        for dev in record["devices"]:
            if dev["bound_driver"] is not None or _rebinds_default(dev):
                self.binder.bind_driver(dev["pci"], dev["bound_driver"])
                log.info("VF %s bound to %s (was %s)", dev["pci"], dev["bound_driver"] or "its default driver",
                         dev["original_driver"])
                faults.reached("dra bind")
        inventory = {d.facts.pci_address: d for d in self.inventory().values()}
        host = HostDevNodes(vhost_net=os.path.exists(sysfs.dev_path("/dev/vhost-net")),
                            rdma_cm=os.path.exists(sysfs.dev_path(RDMA_CM)))
        payloads: list[tuple[PreparedVf, PciDevice, DevicePayload, ResourceConfig]] = []
        for dev in record["devices"]:
            vf = discover_device(sysfs, dev["pci"])  # after the bind: its vfio group, its RDMA nodes
            resource = inventory[dev["pci"]].resource
            payload = claim_payload(vf, resource, host, vhost=bool(dev["config"].get("addVhostMount")))
            payloads.append((dev, vf, payload, resource))
            files.write_device_info(self.settings.devinfo_dir, resource, [(vf, payload)])
            faults.reached("dra device info")
        files.write_json_atomic(Path(record["cdi_spec"]), self._cdi_spec(record, payloads))
        faults.reached("dra cdi spec")

    def _cdi_spec(self, record: ClaimRecord,
                  payloads: list[tuple[PreparedVf, PciDevice, DevicePayload, ResourceConfig]]) -> dict[str, Any]:
        uid = record["uid"]
        by_resource: dict[str, tuple[ResourceConfig, list[DevicePayload]]] = {}
        for _dev, _vf, payload, resource in payloads:
            by_resource.setdefault(resource.full_name, (resource, []))[1].append(payload)
        # the claim's variables are in every device's edits (the same values each time): a
        # container given any of the claim's devices finds all its VFs
        claim_env = {"SRIOVNETWORK_PCI_ADDRESSES": ",".join(d["pci"] for d in record["devices"])}
        for resource, group in by_resource.values():
            key = env_name(resource)
            claim_env[key] = ",".join(p.device_id for p in group)
            claim_env[f"{key}_INFO"] = info_json(group)
        devices = [cdi_device(dev["pci"], self._host_nodes(payload.nodes), {**_device_env(dev, payload), **claim_env})
                   for dev, _vf, payload, _resource in payloads]
        return {"cdiVersion": CDI_VERSION, "kind": cdi_kind(self.settings.driver_name, uid), "devices": devices}

    def _host_nodes(self, nodes: tuple[DeviceNode, ...]) -> list[DeviceNode]:
        """The device nodes with their host path where the container runtime finds them: under the
        node's root as the runtime sees it (`node_root`; "/" on a node, a simulated host's tree)."""
        root = self.settings.node_root
        if root == Path("/"):
            return list(nodes)
        return [dataclasses.replace(n, host_path=str(root / n.host_path.lstrip("/"))) for n in nodes]

    def _cdi_spec_path(self, uid: str) -> Path:
        return self.settings.cdi_dir / f"sriovkit-dra-{uid}.json"

    # -- unprepare --------------------------------------------------------------------------
    def held(self) -> dict[str, PreparedVf]:
        """PCI address -> its device record, for every VF a claim holds (prepared or being prepared)."""
        return {d["pci"]: d for rec in self.checkpoint.claims().values() for d in rec.get("devices", [])}

    def unprepare(self, uid: str) -> bool:
        """Undo what prepare did; False when nothing was prepared for `uid` (already undone)."""
        with self._lock:
            record = self.checkpoint.get(uid)
            if record is None:
                return False
            self._undo(record, strict=True, faults=FaultPoints(self.settings.fault_hook))
            self.checkpoint.delete(uid)
            log.info("claim %s/%s unprepared uid=%s", record.get("namespace"), record.get("name"), uid)
            return True

    def _undo(self, record: ClaimRecord, *, strict: bool = False, faults: FaultPoints | None = None) -> None:
        """Every step attempted; with `strict`, the first failure is raised afterwards (the record
        stays for the kubelet's retry). Removing what is already gone is not a failure."""
        faults = faults or FaultPoints()
        errors: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record.get("cdi_spec", ""))
        faults.reached("dra remove cdi spec")
        for dev in reversed(record.get("devices", [])):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dev["devinfo"])
            faults.reached("dra remove device info")
            try:
                self._restore_driver(dev)
                faults.reached("dra restore driver")
            except OSError as exc:
                errors.append(f"VF {dev['pci']}: restoring driver {dev['original_driver']}: {exc.strerror or exc}")
        if strict and errors:  # the caller logs it, once, with the answer it gives the kubelet
            raise ClaimError("; ".join(errors))
        for error in errors:  # a rollback's: the failure that caused it is what the caller reports
            log.error("%s", error)

    def _restore_driver(self, dev: PreparedVf) -> None:
        if dev["bound_driver"] is None and not _rebinds_default(dev):
            return
        original, pci = dev["original_driver"], dev["pci"]
        if _current_driver(self.settings.sysfs, pci) == original:
            return  # never rebound (interrupted) or already restored
        self.binder.bind_driver(pci, None)
        if original is not None and _current_driver(self.settings.sysfs, pci) != original:
            self.binder.bind_driver(pci, original)


def _current_driver(sysfs: Sysfs, pci: str) -> str | None:
    return discover_device(sysfs, pci).driver


def _wanted_driver(config_driver: str, current: str | None) -> str | None:
    """The driver to bind: "" keeps the current one; "default" the kernel's (None) when the VF is
    on a userspace driver, as upstream (any other driver is taken as the default)."""
    if not config_driver:
        return current
    if config_driver == DEFAULT_DRIVER:
        return None if current in USERSPACE_DRIVERS else current
    return config_driver


def _rebinds_default(dev: PreparedVf) -> bool:
    return dev["config"].get("driver") == DEFAULT_DRIVER and dev["original_driver"] in USERSPACE_DRIVERS


def _device_env(dev: PreparedVf, payload: DevicePayload) -> dict[str, str]:
    """dra-driver-sriov's per-device variables."""
    key = _env_key(dev["device"])
    env = {f"SRIOVNETWORK_VF_DEVICE_{key}": dev["pci"],
           "SRIOVNETWORK_NET_ATTACH_DEF_NAME": dev["config"].get("netAttachDefName", "")}
    vfio = payload.info.get("vfio", {}).get("dev-mount")
    if vfio:
        env[f"SRIOVNETWORK_{key}_VFIO_DEVICE"] = vfio
    rdma = payload.info.get("rdma", {})
    for kind, suffix in _RDMA_ENV:
        if kind in rdma:
            env[f"SRIOVNETWORK_{key}_{suffix}"] = rdma[kind]
    if "rdma_dev" in rdma:
        env[f"SRIOVNETWORK_{key}_RDMA_DEVICE"] = rdma["rdma_dev"]
    return env


def _answer(record: ClaimRecord) -> list[PreparedDevice]:
    return [PreparedDevice(d["request"], d["pool"], d["device"], tuple(d["cdi_ids"])) for d in record["devices"]]
