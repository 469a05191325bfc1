"""The Device Information file (Network Plumbing WG Device Info Spec v1.1.0).

Multus passes a path as ``runtimeConfig.CNIDeviceInfoFile``; the plugin writes
what it attached there, so the pod's network-status annotation can say which
PCI function backs the interface. DEL removes the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any

DEVICE_INFO_VERSION = "1.1.0"


def device_info(pci_address: str, pf_pci_address: str | None) -> dict[str, Any]:
    pci: dict[str, Any] = {"pci-address": pci_address}
    if pf_pci_address:
        pci["pf-pci-address"] = pf_pci_address
    return {"type": "pci", "version": DEVICE_INFO_VERSION, "pci": pci}


def write_device_info(path: str, info: dict[str, Any]) -> None:
    """Atomically: a reader sees no file or the whole file."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".devinfo-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def remove_device_info(path: str) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
