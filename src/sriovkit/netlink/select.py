"""`netlink_for`: the Netlink implementation that serves a host root.

pyroute2 is imported only when a kernel implementation is built: entry points
that never touch netlink (or fail validation first) skip its ~0.1-0.2 s import.
"""

from __future__ import annotations

import os

from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.kernel import KernelNetlink
from sriovkit.netlink.port import Netlink

# sim.py's marker; checked before importing sim (pydantic, yaml: ~0.1 s) on a real node.
_SIM_MARKER = ".sriovkit-sim"


def netlink_for(sysfs: Sysfs) -> Netlink:
    """`SimulatedSwitchNetlink` over the kernel for a simulated host root, else `KernelNetlink`."""
    kernel = KernelNetlink(sysfs)
    if not os.path.exists(os.path.join(sysfs.root, _SIM_MARKER)):
        return kernel
    from sriovkit.host import sim
    from sriovkit.netlink.simswitch import SimulatedSwitchNetlink

    try:
        host = sim.open_existing(sysfs.root)
    except sim.SimSpecError:
        return kernel

    return SimulatedSwitchNetlink(host, kernel)
