"""`HotplugController`: adds and removes secondary interfaces of running pods on this node.

Level-triggered: every change of a pod, of a NAD, a periodic resync and every due
retry lead to the same `_reconcile(uid)`, which compares what the pod's
annotation asks for with what the local record and network-status say is
attached, and runs the difference. What it attached is recorded per pod UID
before and after each ADD, so a restart converges, and a pod deleted while the
controller was down is cleaned up from the record alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sriovkit import logs
from sriovkit.devinfo import pci_device_info
from sriovkit.errors import SriovkitError
from sriovkit.hotplug import cniexec, vhostuser
from sriovkit.hotplug.cniexec import CniCall, CniExecError, CniRuntime, PluginNotFound
from sriovkit.hotplug.cri import CriError, Sandbox
from sriovkit.hotplug.kube import ClusterApi, Informer, Obj
from sriovkit.hotplug.nad import NetworkDefinition, NetworkDefinitionError, parse_nad
from sriovkit.hotplug.networks import DesiredAttachment, name_interfaces
from sriovkit.hotplug.plan import Action, Backoff, Verb, plan
from sriovkit.hotplug.podresources import free_device
from sriovkit.hotplug.record import ADDING, ATTACHED, Attachment, Mount, PodRecord, RecordStore
from sriovkit.hotplug.sandbox import interfaces_in
from sriovkit.hotplug.status import (
    pci_devices_in_status,
    read_network_status,
    reconciled_status,
    secondary_attachments,
    status_annotation,
    status_entry,
)
from sriovkit.hotplug.vhostuser import MountError, VhostUserDirs
from sriovkit.kubeapi.podresources import PodResourcesError
from sriovkit.multus import NETWORK_STATUS_ANNOTATION, NETWORKS_ANNOTATION, NetworkAnnotationError, parse_networks

log = logging.getLogger(__name__)

_PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
_TERMINAL = ("Succeeded", "Failed")


class SandboxFinder(Protocol):
    def sandbox(self, uid: str, namespace: str, name: str) -> Sandbox | None: ...


class DeviceLister(Protocol):
    def devices(self, namespace: str, pod: str, resource: str) -> list[str]: ...


class HotplugFailed(SriovkitError):
    """One attachment could not be changed; retried with backoff, reported as an Event."""


@dataclass(frozen=True)
class HotplugSettings:
    node_name: str
    state_dir: Path
    cni: CniRuntime
    vhostuser: VhostUserDirs | None = None  # None: no bind mounts
    backoff: Backoff = field(default_factory=Backoff)
    resync_s: float = 60.0
    watch_timeout_s: int = 300


class HotplugController:
    """A node-agent component. Construction stores its parts; `start()` makes the threads."""

    def __init__(self, settings: HotplugSettings, *, api: ClusterApi, cri: SandboxFinder,
                 pod_resources: DeviceLister | None = None) -> None:
        self.settings = settings
        self.api, self.cri, self.pod_resources = api, cri, pod_resources
        self.store = RecordStore(settings.state_dir)
        self.pods = Informer("pods", api.list_pods, api.watch_pods, self._pod_changed,
                             key=_pod_uid, watch_timeout_s=settings.watch_timeout_s)
        self.nads = Informer("network-attachment-definitions", api.list_nads, api.watch_nads, self._nad_changed,
                             watch_timeout_s=settings.watch_timeout_s)
        self._due: dict[str, float] = {}  # pod UID -> monotonic time it is to be reconciled
        self._attempts: dict[str, int] = {}
        self._reported: dict[str, str] = {}  # pod UID -> annotation error already sent as an Event
        self._cond = threading.Condition()
        self._busy = False  # a reconcile is running
        self._last_resync = 0.0
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self.reconciled = 0  # finished reconciles, for tests and metrics

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.nads.start()
        self.pods.start()
        self._worker = threading.Thread(target=self._work, name="hotplug", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self.pods.request_stop()
        self.nads.request_stop()
        self.api.stop()
        self.pods.join()
        self.nads.join()
        if self._worker is not None:
            self._worker.join(timeout=self.settings.cni.timeout_s + 5)

    # -- queue ---------------------------------------------------------------------------
    def _pod_changed(self, uid: str, pod: Obj | None) -> None:
        self._enqueue(uid)

    def _nad_changed(self, key: str, nad: Obj | None) -> None:
        for uid in self.pods.known():  # a NAD appearing may let a failed ADD through now
            self._enqueue(uid)

    def _enqueue(self, uid: str, at: float | None = None) -> None:
        """Due at `at` (default now), unless it is due earlier already: a change is never held back."""
        with self._cond:
            when = time.monotonic() if at is None else at
            self._due[uid] = min(self._due.get(uid, when), when)
            self._cond.notify_all()

    def _next_due(self) -> str | None:
        with self._cond:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now - self._last_resync >= self.settings.resync_s:
                    self._resync()
                if self._due:
                    uid, when = min(self._due.items(), key=lambda kv: kv[1])
                    if when <= now:
                        del self._due[uid]
                        self._busy = True
                        return uid
                    self._cond.wait(min(when - now, self.settings.resync_s))
                else:
                    self._cond.wait(self.settings.resync_s)
            return None

    def _resync(self) -> None:
        now = self._last_resync = time.monotonic()
        for uid in set(self.pods.known()) | set(self.store.uids()):
            self._due.setdefault(uid, now)

    def _work(self) -> None:
        while not (self.pods.synced.wait(0.2) and self.nads.synced.wait(0.2)):
            if self._stopping.is_set():
                return
        with self._cond:  # pods removed while we were down are only in the record
            self._resync()
        while (uid := self._next_due()) is not None:
            with logs.context(pod=self._pod_ref(uid), pod_uid=uid):  # every line of this pass names the pod
                self._work_on(uid)

    def _work_on(self, uid: str) -> None:
        try:
            self._reconcile(uid)
            self._attempts.pop(uid, None)
        except Exception as exc:  # the pass's failures, logged once here; each action's also was an Event
            attempt = self._attempts.get(uid, 0) + 1
            self._attempts[uid] = attempt
            delay = self.settings.backoff.delay(attempt)
            log.warning("pod uid=%s: %s; retry %d in %.1f s", uid, exc, attempt, delay)
            self._enqueue(uid, time.monotonic() + delay)
        finally:
            with self._cond:
                self._busy = False
                self.reconciled += 1

    def _pod_ref(self, uid: str) -> str:
        """namespace/name of the pod, from the informer, else from its record (the pod is gone)."""
        pod = self.pods.get(uid)
        if pod is not None:
            meta = pod.get("metadata") or {}
            return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        try:
            record = self.store.load(uid)
        except (ValueError, OSError):  # an unreadable record: _reconcile says so
            return ""
        return record.pod if record is not None else ""

    def wait_idle(self, timeout: float) -> bool:
        """True once no reconcile runs and none is due now (tests: wait for a change to be handled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                busy = self._busy or any(w <= time.monotonic() for w in self._due.values())
            if not busy:
                return True
            time.sleep(0.05)
        return False

    # -- reconcile -----------------------------------------------------------------------
    def _reconcile(self, uid: str) -> None:
        pod = self.pods.get(uid)
        record = self.store.load(uid)
        if pod is None or _going_away(pod):
            if record is not None:
                self._clean_up(record, pod)
            return
        if (pod.get("status") or {}).get("phase") != "Running" or (pod.get("spec") or {}).get("hostNetwork"):
            return
        meta = pod["metadata"]
        record = record or PodRecord(uid=uid, namespace=meta["namespace"], name=meta["name"])
        desired = self._desired(pod, record)
        if desired is None:
            return
        entries = read_network_status(meta.get("annotations"))
        wants_mount = self.settings.vhostuser is not None and vhostuser.wants_vhostuser(pod)
        if not desired and not record.attachments and not secondary_attachments(entries) \
                and (not wants_mount or record.mounts):
            return  # nothing asked, nothing attached: no need to ask the runtime
        sandbox = self._sandbox(pod)
        errors: list[str] = []
        present = self._adopt(pod, record, sandbox, errors)
        if wants_mount:
            self._mount(pod, record, errors)
        others = {i: n for i, n in secondary_attachments(entries).items()
                  if i in present and record.attachment(i) is None}  # attached by Multus when the pod started
        attached = {**others, **{a["interface"]: a["network"] for a in record.attachments or []}}
        removed = self._run(pod, record, sandbox, plan(desired, attached), errors)
        ours = [a["status"] for a in record.attachments or [] if a["state"] == ATTACHED and a.get("status")]
        new = reconciled_status(entries, ours=ours, others=set(others) - set(removed))
        if new != entries:
            self.api.patch_pod_annotations(meta["namespace"], meta["name"],
                                           {NETWORK_STATUS_ANNOTATION: status_annotation(new)})
        if errors:
            raise HotplugFailed("; ".join(errors))

    def _adopt(self, pod: Obj, record: PodRecord, sandbox: Sandbox, errors: list[str]) -> set[str]:
        """Undo what the record holds that is not really in `sandbox`: ADDs cut short, attachments of
        an earlier sandbox of the pod (its netns is gone), interfaces gone from the netns. The plan
        then adds them again. Returns the interfaces the kernel shows in the sandbox's netns."""
        present = interfaces_in(sandbox.netns)
        for attachment in list(record.attachments or []):
            earlier = attachment.get("container_id") != sandbox.id
            if attachment["state"] == ATTACHED and not earlier and attachment["interface"] in present:
                continue
            with logs.context(network=attachment["network"], interface=attachment["interface"]):
                try:
                    self._undo(record, attachment, "" if earlier else sandbox.netns)
                    log.info("pod %s: undid %s@%s (%s)", record.pod, attachment["network"], attachment["interface"],
                             "earlier sandbox" if earlier else attachment["state"])
                except CniExecError as exc:
                    message = f"DEL {attachment['network']}@{attachment['interface']}: {exc}"
                    errors.append(message)
                    self._event(pod, "Warning", "HotplugFailed", message)
        record.sandbox_id, record.netns = sandbox.id, sandbox.netns
        return present

    def _desired(self, pod: Obj, record: PodRecord) -> list[DesiredAttachment] | None:
        meta = pod["metadata"]
        value = (meta.get("annotations") or {}).get(NETWORKS_ANNOTATION, "")
        keep = {a["network"]: a["interface"] for a in record.attachments or [] if a.get("auto")}
        try:
            selections = parse_networks(value, pod=record.pod, default_namespace=meta["namespace"])
            desired = name_interfaces(selections, pod=record.pod, keep=keep)
        except NetworkAnnotationError as exc:
            if self._reported.get(record.uid) != value:  # once per value: the pod's owner must fix it
                self._reported[record.uid] = value
                self._event(pod, "Warning", "InvalidNetworkAnnotation", str(exc))
            log.warning("%s", exc)
            return None
        self._reported.pop(record.uid, None)
        return desired

    def _sandbox(self, pod: Obj) -> Sandbox:
        meta = pod["metadata"]
        try:
            sandbox = self.cri.sandbox(meta["uid"], meta["namespace"], meta["name"])
        except CriError as exc:
            raise HotplugFailed(str(exc)) from None
        if sandbox is None or not sandbox.netns:
            raise HotplugFailed(f"pod {meta['namespace']}/{meta['name']}: the runtime has no ready sandbox "
                                "with a network namespace for it yet")
        return sandbox

    def _run(self, pod: Obj, record: PodRecord, sandbox: Sandbox, actions: list[Action],
             errors: list[str]) -> list[str]:
        """Run the plan; the interfaces removed. A failed action is an Event and an error; the others go on."""
        removed: list[str] = []
        for action in actions:
            with logs.context(network=action.network, interface=action.interface):
                try:
                    if action.verb is Verb.DEL:
                        self._delete(pod, record, sandbox, action)
                        removed.append(action.interface)
                    else:
                        self._add(pod, record, sandbox, action)
                except (CniExecError, NetworkDefinitionError, PodResourcesError, HotplugFailed) as exc:
                    message = f"{action}: {exc}"
                    errors.append(message)
                    self._event(pod, "Warning", "HotplugFailed", message)
        return removed

    def _add(self, pod: Obj, record: PodRecord, sandbox: Sandbox, action: Action) -> None:
        if action.desired is None:
            raise ValueError(f"{action}: an ADD without its selection")
        selection = action.desired.selection
        definition = self._definition(action.network)
        device_id = self._device(pod, record, definition.resource_name) if definition.resource_name else None
        runtime_config: dict[str, Any] = {}
        if selection.mac:
            runtime_config["mac"] = selection.mac
        if selection.ips:
            runtime_config["ips"] = list(selection.ips)
        config = cniexec.network_config(definition.plugins, cni_version=definition.cni_version,
                                        name=definition.network_name, device_id=device_id,
                                        runtime_config=runtime_config, cni_args=selection.cni_args)
        attachment: Attachment = {
            "network": action.network, "interface": action.interface, "auto": selection.interface is None,
            "state": ADDING, "config": config, "device_id": device_id, "container_id": sandbox.id}
        record.put(attachment)
        self.store.save(record)  # before the ADD: a crash in it still leaves what to undo
        try:
            result = cniexec.add(self.settings.cni, config, self._call(record, sandbox.id, action.interface))
        except PluginNotFound:
            record.drop(action.interface)  # nothing ran: nothing to undo
            self.store.save(record)
            raise
        except CniExecError:
            # undo the half-made chain now; if even that fails the record keeps it `adding` for later
            with contextlib.suppress(CniExecError):
                self._undo(record, attachment, record.netns)
            raise
        info = pci_device_info(device_id) if device_id and _PCI_ADDRESS.match(device_id) else None
        entry = status_entry(action.network, action.interface, result, device_info=info)
        attachment["state"], attachment["result"], attachment["status"] = ATTACHED, result, entry
        self.store.save(record)
        ips = ",".join(entry.get("ips", []))
        self._event(pod, "Normal", "AddedInterface", f"Add {action.interface} [{ips}] from {action.network}")
        log.info("pod %s: added %s", record.pod, action)

    def _delete(self, pod: Obj, record: PodRecord, sandbox: Sandbox, action: Action) -> None:
        attachment = record.attachment(action.interface)
        if attachment is not None:
            config, cached = attachment["config"], attachment.get("result")
        else:  # attached by Multus at pod start: the NAD says how to undo it
            definition = self._definition(action.network)
            config = cniexec.network_config(definition.plugins, cni_version=definition.cni_version,
                                            name=definition.network_name, device_id=None, runtime_config={})
            cached = None
        cniexec.delete(self.settings.cni, config, self._call(record, sandbox.id, action.interface), cached)
        record.drop(action.interface)
        self.store.save(record)
        self._event(pod, "Normal", "RemovedInterface", f"Remove {action.interface} from {action.network}")
        log.info("pod %s: removed %s", record.pod, action)

    def _undo(self, record: PodRecord, attachment: Attachment, netns: str) -> None:
        call = self._call(record, attachment.get("container_id") or record.sandbox_id, attachment["interface"],
                          netns=netns)
        cniexec.delete(self.settings.cni, attachment["config"], call, attachment.get("result"))
        record.drop(attachment["interface"])
        self.store.save(record)

    def _definition(self, network: str) -> NetworkDefinition:
        nad = self.nads.get(network)
        if nad is None:
            raise HotplugFailed(f"NetworkAttachmentDefinition {network} not found")
        return parse_nad(nad)

    def _device(self, pod: Obj, record: PodRecord, resource: str) -> str:
        if self.pod_resources is None:
            raise HotplugFailed(f"the network needs a {resource} device and no podresources socket is configured")
        assigned = self.pod_resources.devices(record.namespace, record.name, resource)
        in_use = [held for a in record.attachments or [] if (held := a.get("device_id"))]
        # and the devices Multus attached when the pod started (network-status device-info)
        in_use = list(dict.fromkeys(in_use + pci_devices_in_status(
            read_network_status((pod.get("metadata") or {}).get("annotations")))))
        device = free_device(assigned, in_use)
        if device is None:
            raise HotplugFailed(f"pod {record.pod} has no unused {resource} device from the kubelet "
                                f"(assigned: {', '.join(assigned) or 'none'}; in use: {', '.join(in_use) or 'none'})")
        return device

    def _call(self, record: PodRecord, container_id: str, interface: str, *, netns: str | None = None) -> CniCall:
        return CniCall(container_id=container_id, netns=record.netns if netns is None else netns, ifname=interface,
                       pod_namespace=record.namespace, pod_name=record.name, pod_uid=record.uid)

    # -- vhost-user ----------------------------------------------------------------------
    def _mount(self, pod: Obj, record: PodRecord, errors: list[str]) -> None:
        dirs = self.settings.vhostuser
        if dirs is None:
            return
        source, target = dirs.source(record.uid), dirs.target(record.uid)
        entry: Mount = {"source": str(source), "target": str(target)}
        if entry not in (record.mounts or []):
            record.mounts = [*(record.mounts or []), entry]
            self.store.save(record)  # first: a crash after mount(2) still knows to unmount
        try:
            if vhostuser.bind(source, target):
                self._event(pod, "Normal", "VhostUserMounted", f"{source} bind-mounted on {target}")
        except MountError as exc:
            errors.append(str(exc))
            self._event(pod, "Warning", "HotplugFailed", str(exc))

    # -- pod gone ------------------------------------------------------------------------
    def _clean_up(self, record: PodRecord, pod: Obj | None) -> None:
        """DEL every recorded attachment (newest first) and undo the mounts. Without the pod's
        namespace (sandbox gone) the DEL still runs, with CNI_NETNS empty, as runtimes do."""
        netns = record.netns if record.netns and os.path.exists(record.netns) else ""
        errors = []
        for attachment in reversed(list(record.attachments or [])):
            with logs.context(network=attachment["network"], interface=attachment["interface"]):
                try:
                    self._undo(record, attachment, netns)
                    log.info("pod %s gone: removed %s@%s", record.pod, attachment["network"],
                             attachment["interface"])
                except CniExecError as exc:
                    errors.append(f"DEL {attachment['network']}@{attachment['interface']}: {exc}")
        for mount in list(record.mounts or []):
            try:
                vhostuser.unbind(Path(mount["target"]))
                record.mounts = [m for m in record.mounts or [] if m != mount]
                self.store.save(record)
            except MountError as exc:
                errors.append(str(exc))
        self._reported.pop(record.uid, None)
        if errors:
            raise HotplugFailed(f"pod {record.pod} gone, cleanup incomplete: {'; '.join(errors)}")
        self.store.remove(record.uid)

    def _event(self, pod: Obj, event_type: str, reason: str, message: str) -> None:
        try:
            self.api.create_event(pod, event_type, reason, message)
        except Exception as exc:  # an Event lost must not stop the reconcile
            log.warning("event %s for pod %s not created: %s", reason, pod["metadata"].get("name"), exc)


def _pod_uid(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid", ""))


def _going_away(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) or \
        (pod.get("status") or {}).get("phase") in _TERMINAL
