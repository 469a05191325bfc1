"""Network namespaces: the only module that calls setns(2).

A socket belongs to the namespace it was created in, whatever thread later
uses it. So instead of switching the caller's thread into a pod's namespace
(and risking leaving it there), we create sockets on a fresh thread that
enters the namespace, creates the socket, and then ends; an OS thread that
cannot switch back therefore never runs anything else.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from sriovkit.netlink.errors import NamespaceError

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run_in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run `fn` on a dedicated thread inside the namespace at `netns_path`."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            failure.append(NamespaceError(f"netns {netns_path}", exc.strerror or str(exc), exc.errno))
            return
        try:
            _setns(target)
        except OSError as exc:
            failure.append(NamespaceError(f"netns {netns_path}", f"cannot enter: {exc.strerror}", exc.errno))
            return
        finally:
            os.close(target)
        # From here on this thread stays in the target namespace until it ends.
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=body, name="sriovkit-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def socket_in_netns(netns_path: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket bound to `netns_path`'s namespace (None: the caller's)."""
    if netns_path is None:
        return socket.socket(family, kind, proto)
    return run_in_netns(netns_path, lambda: socket.socket(family, kind, proto))


NSFS_MAGIC = 0x6E736673
NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs file: the CLONE_NEW* type of the namespace (Linux 4.11)


def netns_exists(netns_path: str) -> bool:
    """Whether `netns_path` is a network namespace's file (nsfs, of type net), not merely some
    path nor another kind of namespace (/proc/self/ns/mnt is nsfs too)."""
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        buf = ctypes.create_string_buffer(120)  # struct statfs; f_type is the first word
        if _libc.fstatfs(fd, buf) != 0 or int.from_bytes(buf.raw[:8], "little") != NSFS_MAGIC:
            return False
        return bool(_libc.ioctl(fd, NS_GET_NSTYPE, 0) == CLONE_NEWNET)
    finally:
        os.close(fd)


def is_own_netns(netns_path: str) -> bool:
    """Whether `netns_path` is the namespace this process runs in (the host's, for the agent)."""
    try:
        theirs, ours = os.stat(netns_path), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
