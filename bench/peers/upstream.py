"""Running the upstream Go components on the same input as sriovkit, for side-by-side benchmarks.

The binaries come from `bench/peers/build.sh` (pinned versions, cached under /var/tmp). The
upstream device plugin reads the host's fixed paths (/sys, /var/lib/kubelet/device-plugins,
/var/run/k8s.cni.cncf.io) and asks netlink about the netdevs it finds, so it runs:
- in a network namespace of its own where the simulated host's netdevs exist as veths
  (bridges named like the PFs, veths named like the VFs' netdevs);
- in a private mount namespace where the simulated sysfs is bind-mounted over /sys, the
  kubelet stand-in's directory over /var/lib/kubelet/device-plugins, and a tmpfs over /run
  (its device-info files land there, never on this machine's /run).
It needs Debian's pci.ids (package pci.ids), which `ensure_pci_ids` installs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

BUILD = Path(__file__).resolve().parent / "build.sh"

# Issue 18's figures for upstream (sriov-network-device-plugin v3.6.2 built from its source, run by
# bench/deviceplugin.py on this machine in an earlier session): printed, marked "recorded, not this
# run", only while the peer cannot be built here (the module proxy refuses it). Figure prefix -> value.
RECORDED: dict[str, float] = {
    "first registration, 1024 VFs": 2.97,  # s
    "first registration, 4096 VFs": 13.05,  # s
    "Allocate mean, same client": 0.27,  # ms
    "RSS at registration, 1024 VFs": 35.7,  # MiB
    "RSS settled, 1024 VFs": 45.0,  # MiB
}


def recorded(figure: str) -> float | None:
    """Issue 18's upstream figure for `figure` (a row of bench/deviceplugin.py), if it recorded one."""
    return next((value for prefix, value in RECORDED.items() if figure.startswith(prefix)), None)
PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")


def peer_binary(name: str) -> tuple[Path | None, str]:
    """(path, "") of the built peer, or (None, why not)."""
    out = subprocess.run(["bash", str(BUILD), name], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        peer, _, rest = line.partition(" ")
        if peer == name:
            return (Path(rest), "") if not rest.startswith("unavailable") else (None, rest)
    return None, "build.sh printed nothing"


def ensure_pci_ids() -> str:
    """'' once a pci.ids exists (installing Debian's package if needed), else why not."""
    if any(os.path.exists(p) for p in PCI_IDS):
        return ""
    if shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "pci.ids"],
                       capture_output=True, env=env, check=False)
    return "" if any(os.path.exists(p) for p in PCI_IDS) else "no pci.ids (Debian package pci.ids)"


@contextlib.contextmanager
def veth_namespace(host_root: Path) -> Iterator[str]:
    """A fresh network namespace holding the simulated host's netdevs as veths; yields its path."""
    name = f"skpeer-{secrets.token_hex(4)}"
    pyroute2_netns.create(name)
    path = f"/var/run/netns/{name}"
    try:
        code = (
            "import sys; from pyroute2 import netns; from sriovkit.sim import host as sim; "
            "from sriovkit.sim.net import attach_veths; "
            f"netns.setns({name!r}); attach_veths(sim.open_existing(sys.argv[1]))"
        )
        subprocess.run([sys.executable, "-c", code, str(host_root)], check=True)
        yield path
    finally:
        # the namespace's interfaces go with it; the simulated tree's record of them does too
        pyroute2_netns.remove(name)
        (host_root / "simnet.json").unlink(missing_ok=True)


def device_plugin_command(binary: Path, *, netns_path: str, host_root: Path, device_plugin_dir: Path,
                          config_file: Path) -> list[str]:
    """The argv that starts upstream's sriovdp on the simulated host (see the module's docstring)."""
    script = "\n".join([
        "set -e",
        "mount --make-rprivate /",
        "mount -t tmpfs skpeer /var/lib",
        "mkdir -p /var/lib/kubelet/device-plugins",
        'mount --bind "$1" /var/lib/kubelet/device-plugins',
        "mount -t tmpfs skpeer /run",
        'mount --bind "$2/sys" /sys',
        'exec "$3" --config-file "$4" -logtostderr',
    ])
    return ["nsenter", f"--net={netns_path}", "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, "sh", str(device_plugin_dir), str(host_root), str(binary), str(config_file)]
