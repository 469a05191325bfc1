"""The Device Information file (`sriovkit.devinfo`) at the path Multus names.

Multus passes a path as ``runtimeConfig.CNIDeviceInfoFile`` (its own choice of name under
``/var/run/k8s.cni.cncf.io/devinfo/cni/``); the plugin writes what it attached there, so the
pod's network-status annotation can say which PCI function backs the interface.

The path is the caller's, the plugin is root: it is taken only inside the node's device-info
directory (`CniContext.devinfo_dir`) and without a symlink below it (`sriovkit.cni.paths`), and
is checked before ADD changes anything. The file is created exclusively: when one is already
there (Multus copies the device plugin's file to that path before calling the plugin), it is
left as it is and not ours to remove. DEL removes only the file this plugin created, recognised
by the device and inode recorded at ADD.
"""

from __future__ import annotations

import json
from typing import Any

from sriovkit.cni import paths
from sriovkit.cni.spec import CniError, ErrorCode

FIELD = "runtimeConfig.CNIDeviceInfoFile"


def check_device_info_file(root: str, path: str, reached: str | None = None) -> bool:
    """Before ADD changes anything: the path is usable. Returns whether a file is already there
    (then it is left alone). Raises INVALID_CONFIG naming the field, the value and the reason.
    `root` is the device-info directory as the caller names it; `reached`, the same directory as
    this process reaches it (the agent in a container: through the caller's root), default `root`."""
    try:
        return paths.check_file_slot(reached or root, paths.components_below(path, root))
    except paths.PathRefused as exc:
        raise _refused(path, str(exc)) from None
    except OSError as exc:
        raise _refused(path, f"cannot be checked: {exc.strerror or exc}") from None


def write_device_info(root: str, path: str, info: dict[str, Any], reached: str | None = None) -> list[int] | None:
    """Create the file; returns its identity for DEL (`paths.create_exclusive`), or None if a file
    was there already."""
    try:
        created = paths.create_exclusive(reached or root, paths.components_below(path, root),
                                         json.dumps(info).encode())
    except paths.PathRefused as exc:
        raise _refused(path, str(exc)) from None
    return list(created) if created is not None else None


def remove_device_info(root: str, path: str, identity: list[int] | None, *, unrecorded: bool = False,
                       reached: str | None = None) -> bool:
    """Remove the file if it is still the one ADD created (its identity); with `unrecorded`, the
    regular file at a path that was free when an interrupted ADD checked it (it may have died
    between creating the file and recording it). Anything else at the path stays."""
    if not path or not (identity or unrecorded):
        return False
    try:
        parts = paths.components_below(path, root)
        if identity:
            return paths.remove_if_ours(reached or root, parts, tuple(identity))
        return paths.remove_if_regular(reached or root, parts)
    except paths.PathRefused:
        return False  # a symlink or a non-directory on the way now: not a path of ours any more


def _refused(path: str, reason: str) -> CniError:
    return CniError(ErrorCode.INVALID_CONFIG, f"{FIELD} {json.dumps(path)} {reason}",
                    "device information files are written only inside the node's device-info directory, "
                    "never through a symlink")
