"""Keeps this node's ResourceSlices on the API server equal to what the driver offers.

On every change (and every `resync_s` as a safety net) it lists the slices of this node and
driver, replaces those whose spec differs (bumping the pool's generation, as the scheduler wants
for a changed pool), creates the missing and deletes the rest. Failures are retried with backoff;
the driver keeps serving claims meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sriovkit.dra.kube import ApiError, DraApi

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_BACKOFF_MAX_S = 30.0


class SlicePublisher:
    def __init__(self, api: DraApi, node_name: str, driver: str, desired: Callable[[dict[str, int]], list[Obj]], *,
                 resync_s: float = 30.0) -> None:
        self.api = api
        self.node_name = node_name
        self.driver = driver
        self.desired = desired  # pool generations -> the slices to publish
        self.resync_s = resync_s
        self.syncs = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._synced = threading.Condition()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="dra-slices", daemon=True)
        self._thread.start()
        self.trigger()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def trigger(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        delay = 0.0
        while not self._stopping.is_set():
            self._wake.wait(delay or self.resync_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.sync_once()
                delay = 0.0
            except ApiError as exc:
                delay = min(max(delay * 2, 0.5), _BACKOFF_MAX_S)
                if str(exc) != self.last_error:
                    log.warning("publishing ResourceSlices failed, retrying: %s", exc)
                self.last_error = str(exc)

    def sync_once(self) -> None:
        """A pool whose slices changed in any way (a device, a slice more or less) is rewritten
        whole with its generation bumped: the scheduler ignores slices of an older generation."""
        existing = {s["metadata"]["name"]: s for s in self.api.list_slices(self.node_name, self.driver)}
        old_pools: dict[str, dict[str, Obj]] = {}
        for name, obj in existing.items():
            old_pools.setdefault(obj["spec"]["pool"]["name"], {})[name] = obj
        generations = {pool: max(int(o["spec"]["pool"].get("generation", 0)) for o in objs.values())
                       for pool, objs in old_pools.items()}
        new_pools: dict[str, dict[str, Obj]] = {}
        for body in self.desired(generations):
            new_pools.setdefault(body["spec"]["pool"]["name"], {})[body["metadata"]["name"]] = body
        for pool, bodies in new_pools.items():
            old = old_pools.get(pool, {})
            unchanged = set(bodies) == set(old) and all(_content(old[n]) == _content(b) for n, b in bodies.items()) \
                and len({int(o["spec"]["pool"].get("generation", 0)) for o in old.values()}) == 1
            if unchanged:
                continue
            generation = generations.get(pool, 0) + 1 if old else 1
            for name, body in bodies.items():
                body["spec"]["pool"]["generation"] = generation
                if name in existing:
                    body["metadata"]["resourceVersion"] = existing[name]["metadata"].get("resourceVersion")
                    self.api.replace_slice(name, body)
                    log.info("ResourceSlice updated name=%s devices=%d", name, len(body["spec"]["devices"]))
                else:
                    self.api.create_slice(body)
                    log.info("ResourceSlice created name=%s devices=%d", name, len(body["spec"]["devices"]))
        wanted = {name for bodies in new_pools.values() for name in bodies}
        for name in existing:
            if name not in wanted:
                self.api.delete_slice(name)
                log.info("ResourceSlice deleted name=%s", name)
        self.last_error = None
        with self._synced:
            self.syncs += 1
            self._synced.notify_all()

    def wait_synced(self, after: int, timeout: float) -> bool:
        with self._synced:
            return self._synced.wait_for(lambda: self.syncs > after, timeout)


def _content(obj: Obj) -> Any:
    spec = dict(obj.get("spec") or {})
    pool = dict(spec.get("pool") or {})
    pool.pop("generation", None)
    spec["pool"] = pool
    return spec
