"""Writing a file whole or not at all: the one implementation every part uses.

The policy, for every file sriovkit writes for others to read (state files, journals, device-info
files, CDI specs, the installed CNI executable):

1. a temporary file in the target's own directory (so the rename cannot cross a filesystem),
   created with O_CREAT|O_EXCL|O_NOFOLLOW: never written through a symlink or hard link someone
   planted at its name (a leftover of a killed writer at a caller-chosen name is removed first);
2. its mode set with fchmod (the umask does not decide who may read a state file);
3. the data written and the file fsynced;
4. renamed over the target (`replace`: readers see the old file or the new one, never half), or
   hard-linked to it (`create_new_at`: the name is taken only when it is free);
5. the directory fsynced, so the rename itself survives a power cut.

`durable=False` skips both fsyncs: still atomic for readers, not across a power loss; for state
that a reboot makes meaningless anyway (a test host's switch settings, the running agent's pools file,
the device plugin's device-info files and CDI specs, the per-namespace cniDir records a container reads).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temp_name(name: str) -> str:
    """A fresh temporary name beside `name` (hidden, random: concurrent writers never share one)."""
    return f".{name[:200]}.{secrets.token_hex(6)}.tmp"


def replace(path: str | Path, data: bytes, *, mode: int = 0o644, durable: bool = True,
            tmp_name: str | None = None) -> None:
    """Replace the file at `path` with `data` (the policy above). `tmp_name`: the temporary file's
    name in the same directory, for callers that find a killed writer's leftovers by name."""
    directory, name = os.path.split(os.fspath(path))
    directory = directory or "."
    tmp = os.path.join(directory, tmp_name or temp_name(name))
    fd = _create_temp(tmp, mode, replace_leftover=tmp_name is not None)
    try:
        try:
            _write_all(fd, data, durable=durable)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)


def create_new_at(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644,
                  durable: bool = True) -> os.stat_result | None:
    """Create `name` in the directory open as `dir_fd` with `data`, whole or not at all (a temporary
    file hard-linked to the name, which fails when the name exists). Returns the temporary file's
    stat (the inode now at `name`), or None when a file was already there (left untouched).
    `durable=False`: no fsync of the file or the directory (see the module's note)."""
    tmp = temp_name(name)
    fd = os.open(tmp, _TMP_FLAGS, mode, dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, mode)
            _write_all(fd, data, durable=durable)
            written = os.fstat(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
    if durable:
        os.fsync(dir_fd)
    return written


def fsync_dir(path: str | Path) -> None:
    """Make the directory's entries (renames, links, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(tmp: str, mode: int, *, replace_leftover: bool) -> int:
    try:
        fd = os.open(tmp, _TMP_FLAGS, mode)
    except FileExistsError:
        if not replace_leftover:
            raise
        os.unlink(tmp)  # a killed writer's; unlinked, never truncated (it may be a planted link)
        fd = os.open(tmp, _TMP_FLAGS, mode)
    try:
        os.fchmod(fd, mode)  # the mode asked for, whatever the umask
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes, *, durable: bool) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if durable:
        os.fsync(fd)
