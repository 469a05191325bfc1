"""Has a config file changed? A cheap answer that also sees Kubernetes' ConfigMap updates.

A mounted ConfigMap is a symlink chain (``config.json -> ..data/config.json``, ``..data ->
..2026_11_25_...``) swapped atomically; the file's own stat may not change at all. So a stamp
records both the path itself (not followed) and what it resolves to, with inode, size and mtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FileStamp:
    path: tuple[int, int, int] | None
    target: tuple[str, int, int, int] | None

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        real = os.path.realpath(path)
        target = _triple(real, follow=True)
        return cls(_triple(str(path), follow=False), (real, *target) if target else None)


def _triple(path: str, *, follow: bool) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
