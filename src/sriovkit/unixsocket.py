"""Unix sockets we serve on: 0600 from the first instant, never over someone else's live socket,
and removed only while they are still ours.

A socket file is created by bind(2) with the mode the process umask leaves, and gRPC binds it
itself. So we bind inside a fresh 0700 directory next to the final path, tighten the file to
0600 there, and hard-link it into place: link(2) fails when the name is taken, so a socket that
appeared meanwhile is never replaced. What already sits at the path is removed only when it is
a socket nobody accepts on (a leftover of a dead process); a live listener is someone else's
server, and we refuse to start instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sriovkit.errors import SriovkitError

SOCKET_MODE = 0o600
_PROBE_TIMEOUT_S = 1.0


class SocketInUseError(SriovkitError, OSError):
    """Another process serves (or could serve) on the path: we must not take it over."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(errno.EADDRINUSE, why, str(path))
        self.path = path
        self.why = why

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"


@dataclass(frozen=True, slots=True)
class SocketIdentity:
    """The socket file we placed (device and inode): removed only while the path is still it."""

    dev: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> SocketIdentity | None:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return cls(st.st_dev, st.st_ino)


def has_listener(path: Path) -> bool:
    """Whether a process accepts connections on the unix socket at `path` (connects to find out)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT_S)
    try:
        probe.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        return False
    except TimeoutError:
        return True  # a listener whose backlog is full is still a listener
    except OSError as exc:
        return exc.errno == errno.EAGAIN  # likewise: full backlog on a non-blocking connect
    else:
        return True
    finally:
        probe.close()


def check_free(path: Path, what: str) -> None:
    """Raise SocketInUseError when `path` cannot become our socket without harming another
    process: a live listener is there, or something that is not a socket. Changes nothing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        return  # bind will say what is wrong with the directory
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUseError(path, f"{what}: exists and is not a socket; not replacing it")
    if has_listener(path):
        raise SocketInUseError(path, f"{what}: another process is serving on this socket "
                               "(is another agent running?)")


def remove_stale(path: Path, what: str) -> None:
    """Remove a dead socket at `path` (nobody listens); refuse (SocketInUseError) a live one."""
    check_free(path, what)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def serve_at(path: Path, bind: Callable[[Path], None], what: str) -> SocketIdentity:
    """Make `path` a 0600 socket bound by `bind(private_path)` (which must be listening when it
    returns), whatever the umask; refuse a live socket or other file at `path` (SocketInUseError).
    Returns the identity to pass to `remove_if_ours` when the server stops."""
    return serve_at_all([path], lambda staged: bind(staged[0]), what)[0]


def serve_at_all(paths: Sequence[Path], bind: Callable[[list[Path]], None], what: str) -> list[SocketIdentity]:
    """`serve_at` for one server listening on several paths: all are checked before any changes."""
    for path in paths:
        check_free(path, what)
    for path in paths:
        remove_stale(path, what)
    placed: list[Path] = []
    with contextlib.ExitStack() as stack:
        staged = [stack.enter_context(_private_dir(path.parent)) / "s" for path in paths]
        bind(staged)
        try:
            for path, private in zip(paths, staged, strict=True):
                os.chmod(private, SOCKET_MODE)  # nobody but us can reach it yet: its directory is 0700
                try:
                    os.link(private, path)
                except FileExistsError:  # appeared since we looked: someone else's, leave it
                    raise SocketInUseError(path, f"{what}: another process created this socket meanwhile") from None
                placed.append(path)
        except BaseException:
            for path in placed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
    identities = [SocketIdentity.of(path) for path in paths]
    assert all(i is not None for i in identities)
    return [i for i in identities if i is not None]


def remove_if_ours(path: Path, identity: SocketIdentity | None) -> bool:
    """Unlink `path` only when it is still the socket file we placed; returns whether it was."""
    if identity is None or SocketIdentity.of(path) != identity:
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


@contextlib.contextmanager
def _private_dir(parent: Path) -> Iterator[Path]:
    # short name: a unix socket path holds at most 107 bytes, and this one must fit too
    private = Path(tempfile.mkdtemp(prefix=".sk", dir=parent))  # mkdtemp makes it 0700
    try:
        yield private
    finally:
        shutil.rmtree(private, ignore_errors=True)
