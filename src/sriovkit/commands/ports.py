"""The node's ports for a host root: the kernel's, or the simulator's for a tree it made.

Every entry point (each `sriovctl` command, the agent, the standalone `sriov` plugin) builds the
ports its library code works through here, from its own settings, and hands them in: library
code never chooses an implementation. This module and `sriovkit.sim` are the only places that
know a simulated host exists: a host root holding the marker file `sriovctl sim create` writes
gets the simulator's ports (its embedded switch, its provisioner), any other root the kernel's.
The simulator (pydantic, yaml: ~0.1 s, ~20 MiB) and pyroute2 are imported only when a port that
needs them is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sriovkit import nodepaths
from sriovkit.cni.context import DEFAULT_LOCK_TIMEOUT_S, CniContext
from sriovkit.cni.faults import ENV_KILL_AFTER, FaultHook, kill_after
from sriovkit.cni.state import DEFAULT_STATE_DIR
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.lazy import LazyNetlink

if TYPE_CHECKING:
    from sriovkit.netlink.port import Netlink
    from sriovkit.provision.apply import Provisioner


def is_simulated(host_root: str | os.PathLike[str]) -> bool:
    """Whether `host_root` is a tree the simulator made (a real node's root never is)."""
    from sriovkit.sim.marker import is_simulated as has_marker  # stdlib only: cheap

    return has_marker(host_root)


def netlink_for(sysfs: Sysfs) -> Netlink:
    """The kernel's netlink; on a simulated host, the simulator's embedded switch over it."""
    from sriovkit.netlink.kernel import KernelNetlink

    kernel = KernelNetlink(sysfs)
    if not is_simulated(sysfs.root):
        return kernel
    from sriovkit.sim import host as sim
    from sriovkit.sim.switch import SimulatedSwitchNetlink

    try:
        host = sim.open_existing(sysfs.root)
    except sim.SimSpecError:
        return kernel
    return SimulatedSwitchNetlink(host, kernel)


def provisioner_for(sysfs: Sysfs) -> Provisioner:
    """The kernel's sysfs files on a real node; the simulator's tree on a simulated one."""
    if is_simulated(sysfs.root):
        from sriovkit.sim import host as sim
        from sriovkit.sim.provision import SimulatedProvisioner

        return SimulatedProvisioner(sim.open_existing(sysfs.root))
    from sriovkit.provision.apply import SysfsProvisioner

    return SysfsProvisioner(sysfs)


@dataclass(frozen=True, slots=True)
class DriverBinderFor:
    """The CNI's and DRA's `DriverBinder`: `provisioner_for(sysfs)`, built when a rebind is asked
    for (most calls never rebind, and need not import provisioning)."""

    sysfs: Sysfs

    def bind_driver(self, pci_address: str, driver: str | None) -> None:
        provisioner_for(self.sysfs).bind_driver(pci_address, driver)


def kernel_link_events(host_root: str | os.PathLike[str]) -> bool:
    """Whether the kernel's link events describe this node's devices. The agent shares the host's
    network namespace even when the host's files are mounted elsewhere (/host in the DaemonSet);
    only a simulated host has no kernel links to watch."""
    return not is_simulated(host_root)


def fault_hook_from_env(env: Mapping[str, str], host_root: str | os.PathLike[str]) -> FaultHook | None:
    """``SRIOVKIT_FAULT_KILL_AFTER``'s hook (crash tests, sriovkit.cni.faults), only on a simulated
    host: a real node's root never honours it."""
    spec = env.get(ENV_KILL_AFTER, "")
    if not spec or not is_simulated(host_root):
        return None
    return kill_after(spec)


def prepare_cni(context: CniContext) -> None:
    """Build an agent CNI context's kernel netlink port now (`agent.cni_service.CniWarmUp`): the
    first call would build it otherwise (its modules, ~15 ms), and every call arriving with it would
    wait. A simulated host's port is left to its first call: it imports the simulator (pydantic,
    yaml: ~12 MiB), which a node never loads and which would swell the memory of an agent measured
    on a simulated host."""
    if isinstance(context.netlink, LazyNetlink) and not is_simulated(context.sysfs.root):
        context.netlink.prepare()


def only_on_simulated(hook: FaultHook | None, host_root: str | os.PathLike[str]) -> FaultHook | None:
    """`hook` if `host_root` is a simulated host, else None: a fault hook never reaches a real node."""
    return hook if hook is not None and is_simulated(host_root) else None


def agent_cni_context(host_root: str | Path, *, state_dir: str = DEFAULT_STATE_DIR,
                      lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
                      fault_hook: FaultHook | None = None,
                      on_config_warnings: Callable[[str, int], None] | None = None,
                      caller_root: str = "", devinfo_dir: str = nodepaths.CNI_DEVINFO_DIR,
                      log_dir: str = nodepaths.CNI_LOG_DIR) -> CniContext:
    """The context every CNI call through the agent uses: one netlink implementation, built on the
    first call and kept warm. `fault_hook` is for reliability tests only and is dropped unless
    `host_root` is a simulated host; `sriovctl agent` never passes one."""
    sysfs = Sysfs(Path(host_root))
    return CniContext(sysfs=sysfs, netlink=LazyNetlink(lambda: netlink_for(sysfs)), drivers=DriverBinderFor(sysfs),
                      state_dir=state_dir, lock_timeout_s=lock_timeout_s,
                      fault_hook=only_on_simulated(fault_hook, host_root), on_config_warnings=on_config_warnings,
                      caller_root=caller_root, devinfo_dir=devinfo_dir, log_dir=log_dir)
