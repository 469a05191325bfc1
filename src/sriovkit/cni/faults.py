"""Fault points: a test-only hook that can stop a CNI operation dead after any of its steps.

ADD and DEL call `FaultPoints.reached(label)` after each step has taken effect (and its undo is
registered). Labels are stable names, not the log's step descriptions: "lock taken", "write
journal", "vf vlan", "move into pod", "set mac", "ipam add", "add address", "save state", ...
(`sriovctl`-independent; the reliability tests list them by running an ADD with a recording hook).
A label reached several times in one call (one "add address" per address) is told apart by its
occurrence, counted from 1.

The hook is off unless the caller's `CniContext.fault_hook` is set. Production never sets it:
the entry points' composition roots (`sriovkit.commands.ports`) build one from
``SRIOVKIT_FAULT_KILL_AFTER`` (or take one from a test) only for a host root that is no real
node's, and `sriovctl agent` never passes one.

``SRIOVKIT_FAULT_KILL_AFTER=<label>`` or ``<label>@<n>`` (the n-th time the label is reached):
the process SIGKILLs itself there, as an OOM kill or a node power cut would stop it, with no
chance to run an undo, a ``finally`` or an atexit handler.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

ENV_KILL_AFTER = "SRIOVKIT_FAULT_KILL_AFTER"

FaultHook = Callable[[str, int], None]  # (label, occurrence from 1)


class FaultPoints:
    """Per-call counter of the labels reached; calls the hook (if any) at each."""

    __slots__ = ("_counts", "_hook")

    def __init__(self, hook: FaultHook | None = None) -> None:
        self._hook = hook
        self._counts: dict[str, int] = {}

    def reached(self, label: str) -> None:
        if self._hook is None:
            return
        count = self._counts.get(label, 0) + 1
        self._counts[label] = count
        self._hook(label, count)


def parse_kill_spec(spec: str) -> tuple[str, int]:
    """``label`` or ``label@n`` -> (label, n); n defaults to 1."""
    label, sep, nth = spec.rpartition("@")
    if sep and nth.isdigit() and int(nth) >= 1:
        return label, int(nth)
    return spec, 1


def kill_after(spec: str) -> FaultHook:
    """A hook that SIGKILLs this process when `spec` (see `parse_kill_spec`) is reached."""
    wanted = parse_kill_spec(spec)

    def hook(label: str, occurrence: int) -> None:
        if (label, occurrence) == wanted:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
