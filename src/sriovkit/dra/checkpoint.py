"""The driver's checkpoint of prepared claims: one JSON file, replaced atomically (fsync, rename)
under a lock file, so a restarted agent unprepares exactly what an earlier one prepared.

A claim is written *before* its first change (``complete: false``, with each VF's original
driver and the driver it is to get) and marked complete at the end; an entry that is not
complete is an interrupted prepare, undone before anything else is done with that claim.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any, TypedDict

from sriovkit.host.statefile import locked, read_json, write_json_atomic

VERSION = 1
FILE_NAME = "checkpoint.json"


class PreparedVf(TypedDict):
    """One VF of a claim, as prepare planned it (written before the first change)."""

    request: str
    pool: str
    device: str  # its name in the pool
    pci: str
    resource: str  # the pool's resource, prefix/name
    facts: dict[str, Any]  # its VfFacts when prepared: the slice keeps publishing them while it is held
    original_driver: str | None  # what unprepare restores
    bound_driver: str | None  # the driver prepare binds (None: it keeps the current one)
    config: dict[str, Any]  # the claim's opaque config for it (claimconfig.VfConfig.to_json)
    cdi_ids: list[str]
    devinfo: str  # its device-info file


class ClaimRecord(TypedDict):
    """One claim prepared or being prepared (``complete`` false until every step is done)."""

    uid: str
    namespace: str
    name: str
    pod_uid: str  # the pod it is reserved for ("" if none)
    complete: bool
    devices: list[PreparedVf]
    cdi_spec: str  # the claim's CDI spec file


class Checkpoint:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._lock_path = state_dir / ".checkpoint.lock"
        self._mutex = threading.Lock()

    def claims(self) -> dict[str, ClaimRecord]:
        data = read_json(self.path)
        claims = data.get("claims") if data.get("version") == VERSION else None
        return copy.deepcopy(claims) if isinstance(claims, dict) else {}

    def get(self, uid: str) -> ClaimRecord | None:
        return self.claims().get(uid)

    def put(self, uid: str, record: ClaimRecord) -> None:
        self._update(uid, copy.deepcopy(record))

    def delete(self, uid: str) -> None:
        self._update(uid, None)

    def _update(self, uid: str, record: ClaimRecord | None) -> None:
        with self._mutex, locked(self._lock_path):
            claims = self.claims()
            if record is None:
                claims.pop(uid, None)
            else:
                claims[uid] = record
            write_json_atomic(self.path, {"version": VERSION, "claims": claims})

    def held_vfs(self) -> set[str]:
        """Every VF a claim holds (prepared or being prepared)."""
        return {str(d.get("pci")) for rec in self.claims().values() for d in rec.get("devices", []) if d.get("pci")}

    def holders(self, pci_address: str) -> list[str]:
        """UIDs of the claims (prepared or being prepared) that hold this VF."""
        return [uid for uid, rec in self.claims().items()
                if any(d.get("pci") == pci_address for d in rec.get("devices", []))]
