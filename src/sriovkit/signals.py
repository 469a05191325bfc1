"""Running until SIGTERM or SIGINT: the one way every long-running command stops.

The handlers only set an event; the main thread waits on it in slices (so the handler runs
promptly) and then stops its components in its own `finally`, never inside the handler.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_POLL_S = 1.0

log = logging.getLogger(__name__)


@contextmanager
def stop_requested(signals: Sequence[signal.Signals] = STOP_SIGNALS) -> Iterator[threading.Event]:
    """An event set when one of `signals` arrives while the block runs; the handlers there before
    are restored after it. Main thread only (Python's rule for signal handlers)."""
    event = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        event.set()

    previous = {s: signal.signal(s, on_signal) for s in signals}
    try:
        yield event
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Component(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def run_until_signal(component: Component) -> None:
    """Start `component`, serve until SIGTERM or SIGINT, then stop it (also when waiting failed)."""
    with stop_requested() as stop:
        component.start()
        try:
            wait(stop)
        finally:
            component.stop()


def wait(event: threading.Event) -> None:
    """Until `event` is set, in slices: a signal's handler runs between them."""
    while not event.wait(_POLL_S):
        pass
