"""The standalone `sriov` CNI plugin's composition root (the `sriov` console script, and
``python -m sriovkit.cni.plugin``, which the shims' fallback runs, comes here too).

One process per call: its ports are built from the environment, then `sriovkit.cni.plugin.main`
runs the call with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sriovkit import nodepaths
from sriovkit.cni.context import (
    DEFAULT_LOCK_TIMEOUT_S,
    ENV_CNI_DIRS,
    ENV_DEVINFO_DIR,
    ENV_HOST_ROOT,
    ENV_LOCK_TIMEOUT,
    ENV_LOG_DIR,
    ENV_STATE_DIR,
    CniContext,
)
from sriovkit.cni.state import DEFAULT_STATE_DIR
from sriovkit.commands.ports import DriverBinderFor, fault_hook_from_env, netlink_for
from sriovkit.host.sysfs import Sysfs


def context_from_env(env: Mapping[str, str]) -> CniContext:
    """The standalone plugin's context: SRIOVKIT_HOST_ROOT (default /),
    SRIOVKIT_CNI_STATE_DIR (default /var/lib/cni/sriov), SRIOVKIT_CNI_LOCK_TIMEOUT (s),
    SRIOVKIT_CNI_DEVINFO_DIR (default /var/run/k8s.cni.cncf.io/devinfo), SRIOVKIT_CNI_LOG_DIR (/var/log).
    SRIOVKIT_FAULT_KILL_AFTER is honoured only on a simulated host (see sriovkit.cni.faults)."""
    sysfs = Sysfs(Path(env.get(ENV_HOST_ROOT) or "/"))
    try:
        timeout = float(env.get(ENV_LOCK_TIMEOUT) or DEFAULT_LOCK_TIMEOUT_S)
    except ValueError:
        timeout = DEFAULT_LOCK_TIMEOUT_S
    return CniContext(sysfs=sysfs, netlink=netlink_for(sysfs), drivers=DriverBinderFor(sysfs),
                      state_dir=env.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR, lock_timeout_s=timeout,
                      fault_hook=fault_hook_from_env(env, sysfs.root),
                      cni_dirs=tuple(d for d in (env.get(ENV_CNI_DIRS) or "").split(":") if d.startswith("/")),
                      devinfo_dir=env.get(ENV_DEVINFO_DIR) or nodepaths.CNI_DEVINFO_DIR,
                      log_dir=env.get(ENV_LOG_DIR) or nodepaths.CNI_LOG_DIR)


def main() -> None:
    from sriovkit.cni import plugin

    plugin.main(context_from_env)
