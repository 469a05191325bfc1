"""`CniContext`: the node the CNI works on, passed in, never global.

The node agent builds one at start-up and hands it to every `run_cni` call;
the standalone plugin builds one per process. Both are built by their entry
point's composition root (`sriovkit.commands.ports.agent_cni_context`,
`sriovkit.commands.cni_plugin.context_from_env`), which chooses the ports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sriovkit import nodepaths
from sriovkit.cni.faults import FaultHook
from sriovkit.cni.state import DEFAULT_STATE_DIR, StateStore
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.netns import netns_exists
from sriovkit.netlink.port import Netlink

DEFAULT_LOCK_TIMEOUT_S = 60.0  # upstream's per-VF lock waits as long
ENV_HOST_ROOT = "SRIOVKIT_HOST_ROOT"
ENV_STATE_DIR = "SRIOVKIT_CNI_STATE_DIR"
ENV_LOCK_TIMEOUT = "SRIOVKIT_CNI_LOCK_TIMEOUT"
ENV_CNI_DIRS = "SRIOVKIT_CNI_DIRS"  # ':'-separated: where a NAD's cniDir may point besides the state dir
ENV_DEVINFO_DIR = "SRIOVKIT_CNI_DEVINFO_DIR"
ENV_LOG_DIR = "SRIOVKIT_CNI_LOG_DIR"


class DriverBinder(Protocol):
    """Rebinds a PCI function (driver_override + unbind + probe). Raises OSError on refusal."""

    def bind_driver(self, pci_address: str, driver: str | None) -> None: ...


@dataclass(frozen=True)
class CniContext:
    sysfs: Sysfs
    netlink: Netlink
    state_dir: str = DEFAULT_STATE_DIR
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    devinfo_dir: str = nodepaths.CNI_DEVINFO_DIR  # runtimeConfig.CNIDeviceInfoFile must be inside it
    log_dir: str = nodepaths.CNI_LOG_DIR  # a config's logFile is written only inside it
    drivers: DriverBinder | None = None  # None: a config asking for a driver fails (no rebinding here)
    netns_exists: Callable[[str], bool] = field(default=netns_exists)
    fault_hook: FaultHook | None = None  # tests only: see sriovkit.cni.faults (never set in production)
    # told (input kind, count) of the netconf fields a call ignored as upstream does: the agent counts them
    on_config_warnings: Callable[[str, int], None] | None = None
    # Where the runtime's filesystem is seen from here, for an agent whose pod lacks the host's
    # /var/run/netns and /opt/cni/bin ("" = as given; sriovkit.shim.callerroot). The agent prefixes
    # CNI_NETNS and CNI_PATH with it; IPAM plugins run chrooted into it, device-info files go under it.
    caller_root: str = ""
    # directories a NAD's cniDir may name (or lie inside), besides the state dir and the seeds' default
    cni_dirs: tuple[str, ...] = ()

    def caller_path(self, path: str) -> str:
        """`path` as the runtime gave it, reached from this process."""
        if not self.caller_root or not path.startswith("/"):
            return path
        from sriovkit.shim.callerroot import resolve_in

        return resolve_in(self.caller_root, path)

    def cni_dir_roots(self) -> tuple[str, ...]:
        return (self.state_dir, nodepaths.CNI_STATE_DIR, *self.cni_dirs)

    @property
    def store(self) -> StateStore:
        return StateStore(self.state_dir)

    def driver_binder(self) -> DriverBinder:
        if self.drivers is None:
            raise RuntimeError("this CniContext was built without a driver binder (CniContext.drivers)")
        return self.drivers
