"""Where the benches keep a node's on-disk state (the CNI state directory, host-local's data)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

CHOICES = ["ext4", "tmpdir"]
HELP = ("the CNI state's and IPAM's filesystem: a fresh journaled ext4 (loop-mounted, as a node's /var/lib), "
        "or the temp dir's own")


@contextlib.contextmanager
def state_filesystem(kind: str) -> Iterator[str | None]:
    """Where the CNI state and IPAM data go (None: the temp dir's filesystem). "ext4": a fresh
    journaled ext4 in a loop-mounted image under /var/tmp, removed after, as a node's /var/lib is
    journaled (ext4's default, xfs always). This VM's root is an ext4 without a journal, and there
    every new inode skips those deleted in the last minute (`recently_deleted`, only without a
    journal): with the state's temporary files, a 64-pod burst spent 0.15-0.2 s of the agent's CPU
    there (perf), and the burst took 0.3-0.4 s longer."""
    if kind != "ext4":
        print("CNI state and IPAM data: on the temp dir's filesystem")
        yield None
        return
    handle, name = tempfile.mkstemp(prefix="sriovkit-state-", suffix=".ext4", dir="/var/tmp")
    os.close(handle)
    image, mount = Path(name), Path(tempfile.mkdtemp(prefix="sriovkit-state-mnt-"))
    mounted = False
    try:
        os.truncate(image, 1 << 30)
        why = _run(["mkfs.ext4", "-q", "-F", str(image)]) or _run(["mount", "-o", "loop", str(image), str(mount)])
        mounted = not why
        print("CNI state and IPAM data: on a fresh journaled ext4 (loop)" if mounted else
              f"CNI state and IPAM data: on the temp dir's filesystem (no journaled ext4 here: {why})")
        yield str(mount) if mounted else None
    finally:
        if mounted:
            _run(["umount", str(mount)])
        with contextlib.suppress(OSError):
            mount.rmdir()
        image.unlink(missing_ok=True)


def _run(cmd: list[str]) -> str:
    """"" when `cmd` succeeded, else why not (a tool missing included)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        return f"{cmd[0]}: {exc.strerror}"
    return "" if done.returncode == 0 else f"{cmd[0]}: {done.stderr.strip() or f'exit {done.returncode}'}"
