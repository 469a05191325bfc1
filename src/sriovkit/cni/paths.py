"""Files the CNI writes at paths a caller names: only inside a directory the node gives it.

`runtimeConfig.CNIDeviceInfoFile` and `logFile` come from whoever runs the plugin or wrote the
NetworkAttachmentDefinition; the plugin runs as root. So a path is taken only when it names a
file inside its directory (`CniContext.devinfo_dir`, `CniContext.log_dir`), written lexically
so (absolute, no ``.`` or ``..`` component), and is then opened one component at a time from
that directory with O_NOFOLLOW: a symlink anywhere below the directory is refused, never
followed, whoever planted it. The directory itself is the node's (a flag or an environment
variable of the agent or the plugin) and may sit behind symlinks such as /var/run -> /run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence

from sriovkit import atomicfile
from sriovkit.errors import SriovkitError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(SriovkitError, ValueError):
    """A caller's path that is not taken; the message says why, in words for an error line."""


def components_below(path: str, root: str) -> list[str]:
    """The components of `path` below `root` (pure). Raises PathRefused unless `path` is an
    absolute path of a file inside `root` (or a directory under it) with no ``.``/``..``."""
    if not isinstance(path, str) or not path:
        raise PathRefused("is not a path")
    if "\0" in path:
        raise PathRefused("contains a NUL byte")
    if not path.startswith("/"):
        raise PathRefused("is not an absolute path")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise PathRefused("has a '.' or '..' component")
    for base in _root_spellings(root):
        if len(parts) > len(base) and parts[:len(base)] == base:
            return parts[len(base):]
    raise PathRefused(f"is not inside {root}")


def _root_spellings(root: str) -> list[list[str]]:
    """The root as configured and as resolved (/var/run/x and /run/x name the same directory)."""
    spellings = [[p for p in os.path.normpath(root).split("/") if p]]
    resolved = [p for p in os.path.realpath(root).split("/") if p]
    if resolved not in spellings:
        spellings.append(resolved)
    return spellings


class ComponentError(SriovkitError, OSError):
    """A directory on the way could not be opened (or made): `index` names which, `error` why."""

    def __init__(self, index: int, error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.index, self.error = index, error


def open_below(fd: int, names: Sequence[str], *, create: bool) -> int:
    """A new descriptor of the directory `names` below the open directory `fd`, each component
    opened without following a symlink; with `create`, missing ones are made (mode 0755).
    FileNotFoundError for a missing one otherwise; ComponentError for anything else on the way."""
    current = os.dup(fd)
    try:
        for index, name in enumerate(names):
            try:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=current)
                child = os.open(name, _DIR_FLAGS, dir_fd=current)
            except FileNotFoundError:
                if not create:
                    raise
                raise ComponentError(index, FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))) from None
            except OSError as exc:
                raise ComponentError(index, exc) from None
            os.close(current)
            current = child
    except BaseException:
        os.close(current)
        raise
    return current


@contextlib.contextmanager
def parent_dir(root: str, parts: list[str], *, create: bool) -> Iterator[int | None]:
    """An open descriptor of the directory holding `parts[-1]`, reached from `root` without
    following a symlink; None when a directory on the way is missing and `create` is False.
    With `create`, missing directories (and `root` itself) are made, mode 0755."""
    if create:
        os.makedirs(root, mode=0o755, exist_ok=True)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if create:
            raise
        yield None
        return
    try:
        fd = open_below(root_fd, parts[:-1], create=create)
    except FileNotFoundError:
        yield None
        return
    except ComponentError as exc:
        raise _refusal(exc.error, parts[exc.index]) from None
    finally:
        os.close(root_fd)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _entry(root: str, parts: list[str]) -> Iterator[tuple[int, os.stat_result] | None]:
    """The open directory holding the path's file and the file's own stat (a symlink not
    followed), or None when the file or a directory on the way is missing."""
    with parent_dir(root, parts, create=False) as fd:
        if fd is None:
            yield None
            return
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            yield None
            return
        yield fd, st


def _refusal(exc: OSError, name: str) -> PathRefused | OSError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return PathRefused(f"goes through {name!r}, which is a symlink or not a directory")
    return exc


def check_file_slot(root: str, parts: list[str]) -> bool:
    """Before any change: whether a file already sits at the path (True: a regular file, which is
    left alone; False: nothing there). Raises PathRefused for a symlink or anything not a
    regular file on the way or at the end."""
    with _entry(root, parts) as found:
        if found is None:
            return False
        st = found[1]
    if stat.S_ISLNK(st.st_mode):
        raise PathRefused("is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused("is not a regular file")
    return True


def create_exclusive(root: str, parts: list[str], data: bytes, mode: int = 0o644) -> tuple[int, int, int] | None:
    """Write `data` as a new file at the path, whole or not at all (a temporary file, then a hard
    link to the name, which fails if the name exists). Returns the new file's identity (st_dev,
    st_ino, st_ctime_ns: an inode number alone is reused as soon as a file is deleted), or None
    when a file was already there (left untouched: it is not ours)."""
    with parent_dir(root, parts, create=True) as fd:
        assert fd is not None
        written = atomicfile.create_new_at(fd, parts[-1], data, mode=mode)
        if written is None:
            return None
        st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)  # after the link count settled
        if st.st_ino != written.st_ino:
            raise PathRefused("was replaced while it was being written")
        return _identity(st)


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_dev, st.st_ino, st.st_ctime_ns


def remove_if_ours(root: str, parts: list[str], identity: tuple[int, ...]) -> bool:
    """Remove the file at the path only if it is still the one we created (same device, inode and
    change time); never through a symlink. Returns whether it was removed."""
    with _entry(root, parts) as found:
        if found is None or _identity(found[1]) != tuple(identity) or not stat.S_ISREG(found[1].st_mode):
            return False
        os.unlink(parts[-1], dir_fd=found[0])
        return True


def remove_if_regular(root: str, parts: list[str]) -> bool:
    """Remove the regular file at the path (never a symlink, never through one)."""
    with _entry(root, parts) as found:
        if found is None or not stat.S_ISREG(found[1].st_mode):
            return False
        os.unlink(parts[-1], dir_fd=found[0])
        return True


def open_for_append(root: str, parts: list[str]) -> int:
    """A descriptor for appending to the (regular, single-link) file at the path, created 0600 if
    missing; never a FIFO or device, never through a symlink."""
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
             | os.O_NOCTTY)
    with parent_dir(root, parts, create=False) as fd:
        if fd is None:
            raise PathRefused("names a directory that does not exist")
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise PathRefused("is not a regular file")
        try:
            out = os.open(parts[-1], flags, 0o600, dir_fd=fd)
        except OSError as exc:
            raise _refusal(exc, parts[-1]) from None
    st = os.fstat(out)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # replaced meanwhile, or a hard link to elsewhere
        os.close(out)
        raise PathRefused("is not a regular file of its own (hard-linked)")
    return out
