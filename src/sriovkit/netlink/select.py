"""`netlink_for`: the Netlink implementation that serves a host root.

pyroute2 is imported only when a kernel implementation is built: entry points
that never touch netlink (or fail validation first) skip its ~0.1-0.2 s import.
"""

from __future__ import annotations

import threading
from typing import Any

from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.kernel import KernelNetlink
from sriovkit.netlink.port import Netlink
from sriovkit.sim.marker import is_simulated


def netlink_for(sysfs: Sysfs) -> Netlink:
    """`SimulatedSwitchNetlink` over the kernel for a simulated host root, else `KernelNetlink`."""
    kernel = KernelNetlink(sysfs)
    if not is_simulated(sysfs.root):  # before importing sim (pydantic, yaml: ~0.1 s, ~20 MiB)
        return kernel
    from sriovkit.sim import host as sim
    from sriovkit.sim.switch import SimulatedSwitchNetlink

    try:
        host = sim.open_existing(sysfs.root)
    except sim.SimSpecError:
        return kernel

    return SimulatedSwitchNetlink(host, kernel)


class LazyNetlink:
    """`netlink_for(sysfs)`, built on first use (thread-safe).

    The agent's CNI context holds one: an agent that has served no CNI call yet has loaded
    neither pyroute2 nor, on a simulated host, the simulator (pydantic, yaml: ~20 MiB)."""

    def __init__(self, sysfs: Sysfs) -> None:
        self._sysfs = sysfs
        self._impl: Netlink | None = None
        self._lock = threading.Lock()

    def _get(self) -> Netlink:
        if self._impl is None:
            with self._lock:
                if self._impl is None:
                    self._impl = netlink_for(self._sysfs)
        return self._impl

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def close(self) -> None:
        if self._impl is not None:
            self._impl.close()
