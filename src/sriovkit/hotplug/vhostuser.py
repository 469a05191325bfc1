"""vhost-user socket directories: the pod's emptyDir bind-mounted where OVS looks.

A pod with an emptyDir volume named `vhostuser-sockets` gets
`<kubelet-root>/pods/<uid>/volumes/kubernetes.io~empty-dir/vhostuser-sockets`
bind-mounted on `<ovs-run-dir>/vhost_sockets/<uid>/vhostuser-sockets`, so a
socket made on either side is seen on the other. mount(2) and umount2(2)
through libc (no `mount` binary in the agent's image, no parsing its text).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sriovkit import nodepaths
from sriovkit.errors import SriovkitError

VOLUME_NAME = "vhostuser-sockets"
MS_BIND = 0x1000
MNT_DETACH = 0x2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class MountError(SriovkitError, OSError):
    """mount(2) or umount2(2) refused; the message has both paths and the kernel's answer."""


@dataclass(frozen=True, slots=True)
class VhostUserDirs:
    kubelet_root: Path = Path(nodepaths.KUBELET_ROOT)
    ovs_run_dir: Path = Path(nodepaths.OVS_RUN_DIR)

    def source(self, uid: str) -> Path:
        return self.kubelet_root / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / VOLUME_NAME

    def target(self, uid: str) -> Path:
        return self.ovs_run_dir / "vhost_sockets" / uid / VOLUME_NAME


def wants_vhostuser(pod: Mapping[str, Any]) -> bool:
    """The pod has an emptyDir volume named `vhostuser-sockets`."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return any(v.get("name") == VOLUME_NAME and "emptyDir" in v for v in volumes if isinstance(v, Mapping))


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str | Path = "/proc/self/mountinfo") -> list[str]:
    with open(mountinfo) as f:
        return [_unescape(line.split()[4]) for line in f if len(line.split()) > 4]


def is_mounted(target: Path, mountinfo: str | Path = "/proc/self/mountinfo") -> bool:
    return os.path.realpath(target) in mount_points(mountinfo) or str(target) in mount_points(mountinfo)


def bind(source: Path, target: Path) -> bool:
    """Bind-mount `source` on `target` (made if missing). False when it already is mounted."""
    if not source.is_dir():
        raise MountError(errno.ENOENT, f"vhost-user: volume directory {source} does not exist")
    target.mkdir(parents=True, exist_ok=True)
    if is_mounted(target):
        return False
    if _libc.mount(bytes(source), bytes(target), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"vhost-user: bind mount {source} on {target}: {os.strerror(err)}")
    return True


def unbind(target: Path) -> None:
    """Undo `bind` (detaching, so a socket still open does not keep it) and remove the directories
    made for it. Nothing mounted is fine: the undo may run twice."""
    if is_mounted(target) and _libc.umount2(bytes(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise MountError(err, f"vhost-user: unmount {target}: {os.strerror(err)}")
    for directory in (target, target.parent):
        with contextlib.suppress(FileNotFoundError, OSError):
            directory.rmdir()
