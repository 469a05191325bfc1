"""The network a prepared claim's VF got, in the claim's status (KEP-4817): after the CNI attached
a VF that a prepared claim holds, the claim's ``status.devices[]`` entry for that device carries
``networkData`` (the pod's interface name, its addresses, its MAC); after DEL the entry goes.

Upstream this is Multus' part, from its main branch; with Multus 4.x (which only hands the CNI
the VF through the kubelet's podresources) nobody writes it, so the agent does, from what its own
CNI answered. The call is the CNI's own result and the VF is the one the checkpoint says the claim
holds (by PCI address, as the kernel names it); a pod that is not the one the claim is reserved
for gets nothing written into someone else's claim.

The CNI's answer never waits for the API server: calls are queued and written in order by one
thread; a failure is logged once and dropped (the pod's network is up either way).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sriovkit.cni.netconf import parse_cni_args, read_device_id
from sriovkit.dra.checkpoint import Checkpoint
from sriovkit.dra.kube import ApiError, ConflictError, DraApi, Obj

log = logging.getLogger(__name__)

_CONFLICT_RETRIES = 5
_KEY = ("driver", "pool", "device")


@dataclass(frozen=True, slots=True)
class DeviceRef:
    namespace: str
    name: str
    uid: str
    pool: str
    device: str


def network_data(ifname: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """KEP-4817's NetworkDeviceData from a CNI result: the sandbox interface named `ifname`, its
    MAC, and the result's addresses on it (or not tied to an interface), in canonical CIDR form."""
    interfaces = result.get("interfaces") or []
    index = next((i for i, itf in enumerate(interfaces) if isinstance(itf, dict) and itf.get("name") == ifname
                  and itf.get("sandbox")), None)
    data: dict[str, Any] = {"interfaceName": ifname}
    ips = []
    for ip in result.get("ips") or []:
        if not isinstance(ip, dict) or (ip.get("interface") is not None and ip.get("interface") != index):
            continue
        try:
            ips.append(str(ipaddress.ip_interface(str(ip.get("address")))))
        except ValueError:
            continue
    if ips:
        data["ips"] = ips
    if index is not None and interfaces[index].get("mac"):
        data["hardwareAddress"] = str(interfaces[index]["mac"])
    return data


def with_network_data(status_devices: list[Obj], key: tuple[str, str, str], data: dict[str, Any] | None) -> list[Obj]:
    """`status.devices` with the entry for `key` (driver, pool, device) carrying `data`; with None
    its networkData removed (and the entry, if nothing else is in it)."""
    out, found = [], False
    for entry in status_devices:
        if tuple(entry.get(k) for k in _KEY) == key and not entry.get("shareID"):
            found = True
            entry = {k: v for k, v in entry.items() if k != "networkData"}
            if data is not None:
                entry["networkData"] = data
            elif not set(entry) - {*_KEY}:
                continue
        out.append(entry)
    if not found and data is not None:
        out.append({**dict(zip(_KEY, key, strict=True)), "networkData": data})
    return out


class ClaimNetworkStatus:
    """`observe` is the agent's CNI observer (called after every CNI call, with its answer)."""

    def __init__(self, api: DraApi, driver_name: str, checkpoint: Checkpoint) -> None:
        self.api = api
        self.driver_name = driver_name
        self.checkpoint = checkpoint
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        # (container, ifname) -> what its ADD wrote: DEL's config may lack the deviceID (Multus
        # rebuilds it without one when its cache is gone); an agent restart falls back to it
        self._attached: dict[tuple[str, str], tuple[DeviceRef, str]] = {}
        self._attached_lock = threading.Lock()
        self.written = 0  # claims updated (tests, metrics)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dra-network-status", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def observe(self, env: Mapping[str, str], stdin: bytes, stdout: bytes, code: int) -> None:
        command, ifname = env.get("CNI_COMMAND", ""), env.get("CNI_IFNAME", "")
        if command not in ("ADD", "DEL") or (command == "ADD" and code != 0) or not ifname:
            return
        attachment = (env.get("CNI_CONTAINERID", ""), ifname)
        if command == "DEL":
            with self._attached_lock:
                known = self._attached.pop(attachment, None)
            if known is not None:
                self._queue.put(lambda: self._write(known[0], None, known[1]))
                return
        device_id = read_device_id(stdin)
        if not device_id:
            return
        pci = device_id
        pod_uid = parse_cni_args(env.get("CNI_ARGS", "")).get("K8S_POD_UID", "")
        found = self._held_by(pci, pod_uid)
        if found is None:
            return
        ref = found
        data: dict[str, Any] | None = None
        if command == "ADD":
            try:
                data = network_data(ifname, json.loads(stdout))
            except (ValueError, AttributeError):
                return
            with self._attached_lock:
                self._attached[attachment] = (ref, pci)
        self._queue.put(lambda: self._write(ref, data, pci))

    def _held_by(self, pci: str, pod_uid: str) -> DeviceRef | None:
        for uid, record in self.checkpoint.claims().items():
            if not record.get("complete"):
                continue
            for dev in record.get("devices", []):
                if dev.get("pci") != pci:
                    continue
                reserved = record.get("pod_uid", "")
                if pod_uid and reserved and pod_uid != reserved:
                    log.warning("claim %s/%s: VF %s attached for pod uid %s, the claim is reserved for %s: "
                                "its status is not written", record["namespace"], record["name"], pci, pod_uid,
                                reserved)
                    return None
                return DeviceRef(record["namespace"], record["name"], uid, dev["pool"], dev["device"])
        return None

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job()

    def _write(self, ref: DeviceRef, data: dict[str, Any] | None, pci: str) -> None:
        key = (self.driver_name, ref.pool, ref.device)
        what = "networkData" if data is not None else "networkData removed"
        for _ in range(_CONFLICT_RETRIES):
            try:
                claim = self.api.get_claim(ref.namespace, ref.name)
                if (claim.get("metadata") or {}).get("uid") != ref.uid:
                    return  # another claim of that name now: not ours to write
                devices = (claim.get("status") or {}).get("devices") or []
                changed = with_network_data(devices, key, data)
                if changed == devices:
                    return
                self.api.patch_claim_devices_status(ref.namespace, ref.name, claim["metadata"]["resourceVersion"],
                                                    changed)
            except ConflictError:
                continue
            except ApiError as exc:
                log.warning("claim %s/%s: status.devices %s for VF %s (%s) not written: %s", ref.namespace,
                            ref.name, ref.device, pci, what, exc)
                return
            self.written += 1
            log.info("claim %s/%s: status.devices %s %s", ref.namespace, ref.name, ref.device, what)
            return
        log.warning("claim %s/%s: status.devices %s for VF %s not written: it kept changing", ref.namespace,
                    ref.name, ref.device, pci)
