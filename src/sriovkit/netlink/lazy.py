"""`LazyNetlink`: a Netlink port built on first use.

Building a netlink implementation imports pyroute2 (~0.1-0.2 s) and opens sockets; a process
that never touches netlink (or fails validation first) should pay for neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sriovkit.netlink.port import Netlink


class LazyNetlink:
    """`build()`, called on first use (thread-safe), then kept.

    The agent's CNI context holds one, built by its warm-up at start (`prepare`) on a node and at
    the first call on a simulated host; a standalone process that refuses its input first builds
    none."""

    def __init__(self, build: Callable[[], Netlink]) -> None:
        self._build = build
        self._impl: Netlink | None = None
        self._lock = threading.Lock()

    def _get(self) -> Netlink:
        if self._impl is None:
            with self._lock:
                if self._impl is None:
                    self._impl = self._build()
        return self._impl

    def prepare(self) -> None:
        """Build it now (an agent's warm-up), not at the first call."""
        self._get()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def close(self) -> None:
        if self._impl is not None:
            self._impl.close()
