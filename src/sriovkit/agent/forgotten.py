"""The agent's sweep for CNI attachments the runtime forgot (sriovkit.cni.forgotten): at start and
every period, asks the container runtime which sandboxes it knows and releases the attachments of
sandboxes gone for good. A runtime that cannot be asked means nothing is released (warned once
until it answers again): no VF is ever released on a guess."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sriovkit.cni.context import CniContext
from sriovkit.cni.forgotten import forgotten, release_forgotten
from sriovkit.cni.spec import CniError

log = logging.getLogger(__name__)


class ForgottenAttachments:
    """A `Component`: `start()` runs one pass in its thread, then one every `period_s`."""

    def __init__(self, context: CniContext, sandboxes: Callable[[], set[str]], *, period_s: float,
                 runtime: str = "the container runtime") -> None:
        self.context = context
        self.sandboxes = sandboxes  # raises (CriError) when the runtime cannot say
        self.period_s = period_s
        self.runtime = runtime
        self.released = 0  # attachments released since start (for tests and the log)
        self._unreachable = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cni-forgotten", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.period_s + 70.0)  # a release in progress finishes (lock, IPAM)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # the sweep must keep running: one bad pass is logged, the next retries
                log.exception("sweep for forgotten CNI attachments failed")
            self._stop.wait(self.period_s)

    def sweep(self) -> list[str]:
        """One pass: the keys of the attachments released."""
        try:
            known = self.sandboxes()
        except Exception as exc:  # whatever the runtime's client raises: do nothing on a guess
            if not self._unreachable:
                log.warning("forgotten CNI attachments: %s cannot be asked which sandboxes exist, nothing "
                            "released until it answers: %s", self.runtime, exc)
            self._unreachable = True
            return []
        if self._unreachable:
            log.info("forgotten CNI attachments: %s answers again", self.runtime)
            self._unreachable = False
        # records listed after the sandboxes: an ADD that starts in between has a live netns
        stale = forgotten(self.context.store.records(pending=True), known, self.context.netns_exists)
        released = []
        for record in stale:
            try:
                release_forgotten(self.context, record)
            except CniError as exc:  # kept: the next pass retries (e.g. the VF is not back in the host yet)
                log.warning("forgotten CNI attachment %s (VF %s) not released yet: %s %s", record.key,
                            record.pci_address, exc.msg, exc.details)
                continue
            released.append(record.key)
        self.released += len(released)
        return released
