"""Small JSON state files shared by several processes: flock'd, replaced atomically.

Readers see either the old or the new file, never half of one, and a crash leaves no
torn file (`sriovkit.atomicfile`). Writers serialize on a
separate lock file, because the data file itself is replaced on every write.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sriovkit import atomicfile


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if missing) for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_json(path: Path) -> dict[str, Any]:
    """The file's object, or {} when it does not exist yet."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def write_json_atomic(path: Path, data: dict[str, Any], *, durable: bool = True) -> None:
    """Replace `path` with `data` (mode 0600), by `sriovkit.atomicfile`'s policy; `durable=False`
    for state that a reboot makes meaningless anyway, such as a test host's switch settings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomicfile.replace(path, json.dumps(data, sort_keys=True).encode(), mode=0o600, durable=durable)
