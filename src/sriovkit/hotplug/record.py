"""The controller's own record of what it attached to each pod, one file per pod UID.

Written before each CNI ADD (state `adding`) and after it (`attached`), so a
restart knows what to undo even for an ADD cut short, and a pod deleted while
the controller was down can still be cleaned up: the record keeps the exact
config and result each DEL needs (as libcni's cache does).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from sriovkit.host.statefile import read_json, write_json_atomic
from sriovkit.hotplug.status import NetworkStatusEntry

ADDING = "adding"
ATTACHED = "attached"


class Attachment(TypedDict):
    """One network the controller attached (or is attaching) to the pod, as the record keeps it."""

    network: str  # the NAD, namespace/name
    interface: str
    state: str  # ADDING | ATTACHED
    config: dict[str, Any]  # the network config ADD was given: what its DEL gets
    auto: NotRequired[bool]  # the selection named no interface: the controller chose it
    device_id: NotRequired[str | None]  # the device ADD was given (deviceID), if the network needs one
    container_id: NotRequired[str]  # the sandbox ADD ran in (absent in older records: the pod's)
    result: NotRequired[dict[str, Any]]  # ADD's CNI result, once attached: its DEL's prevResult
    status: NotRequired[NetworkStatusEntry]  # its network-status entry


class Mount(TypedDict):
    """A vhost-user directory bind-mounted into the pod."""

    source: str
    target: str


@dataclass
class PodRecord:
    uid: str
    namespace: str
    name: str
    sandbox_id: str = ""
    netns: str = ""
    attachments: list[Attachment] | None = None
    mounts: list[Mount] | None = None

    @property
    def pod(self) -> str:
        return f"{self.namespace}/{self.name}"

    def attachment(self, interface: str) -> Attachment | None:
        return next((a for a in self.attachments or [] if a["interface"] == interface), None)

    def put(self, attachment: Attachment) -> None:
        self.drop(attachment["interface"])
        self.attachments = [*(self.attachments or []), attachment]

    def drop(self, interface: str) -> None:
        self.attachments = [a for a in self.attachments or [] if a["interface"] != interface]

    def empty(self) -> bool:
        return not self.attachments and not self.mounts


class RecordStore:
    """`<state_dir>/pods/<uid>.json`; only the controller's worker writes it."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir) / "pods"

    def path(self, uid: str) -> Path:
        if not uid or "/" in uid or uid.startswith("."):
            raise ValueError(f"pod UID {uid!r} cannot name a record file")
        return self.dir / f"{uid}.json"

    def load(self, uid: str) -> PodRecord | None:
        data = read_json(self.path(uid))
        if not data:
            return None
        return PodRecord(uid=uid, namespace=data.get("namespace", ""), name=data.get("name", ""),
                         sandbox_id=data.get("sandbox_id", ""), netns=data.get("netns", ""),
                         attachments=list(data.get("attachments") or []), mounts=list(data.get("mounts") or []))

    def save(self, record: PodRecord) -> None:
        if record.empty():
            self.remove(record.uid)
            return
        write_json_atomic(self.path(record.uid), {
            "namespace": record.namespace, "name": record.name, "sandbox_id": record.sandbox_id,
            "netns": record.netns, "attachments": record.attachments or [], "mounts": record.mounts or []})

    def remove(self, uid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(uid))

    def uids(self) -> list[str]:
        try:
            return sorted(p.stem for p in self.dir.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            return []
