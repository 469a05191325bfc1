"""The `Sysfs` port: a host root plus cheap read helpers.

Everything that reads the node's PCI state goes through a `Sysfs` so that any
host root (a test's directory tree, or the real ``/``) is served alike.
The helpers swallow only "not there" errors: sysfs attributes come and go as
devices are added, removed and rebound, and a missing one is a fact, not a bug.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_MISSING = (FileNotFoundError, NotADirectoryError, ProcessLookupError)


@dataclass(frozen=True, slots=True)
class Sysfs:
    """A node's filesystem view rooted at `root` (``/`` on a real node)."""

    root: Path = Path("/")

    @property
    def sys(self) -> str:
        return os.path.join(self.root, "sys")

    @property
    def dev(self) -> str:
        return os.path.join(self.root, "dev")

    @property
    def pci_devices(self) -> str:
        return os.path.join(self.sys, "bus", "pci", "devices")

    def pci_device_dir(self, pci_address: str) -> str:
        return os.path.join(self.pci_devices, pci_address)

    def net_class_dir(self, netdev: str) -> str:
        return os.path.join(self.sys, "class", "net", netdev)

    def dev_path(self, container_path: str) -> str:
        """Where a device node such as ``/dev/vfio/12`` lives under this root."""
        return os.path.join(self.root, container_path.lstrip("/"))


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except _MISSING:
        return None
    except OSError:
        # Some attributes exist but refuse reads (e.g. EINVAL/ENODEV on a device
        # being removed); treat like absent, the next discovery sees the truth.
        return None


def read_int(path: str) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def link_name(path: str) -> str | None:
    """The last component of a symlink's target (a driver, an iommu group, a VF)."""
    try:
        return os.path.basename(os.readlink(path))
    except (OSError, ValueError):
        return None


def list_dir(path: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
