"""Network namespaces: the only module that calls setns(2).

A socket belongs to the namespace it was created in, whatever thread later
uses it. So instead of switching the caller's thread into a pod's namespace
(and risking leaving it there), we create sockets on a fresh thread that
enters the namespace, creates the socket, and then ends; an OS thread that
cannot switch back therefore never runs anything else.

Within `sockets_kept()` (one CNI operation) that thread is kept for the block: the first socket
asked for in a namespace starts it, each later one is made by it too (a queue away), and it ends
with the block. It still runs nothing but socket creation in that one namespace; a call that
needs several sockets in a pod (its netlink socket, the announcements' packet socket) pays for one
thread instead of one each, which under emulation or on a busy node is most of the cost of a
namespace trip. The namespace is opened once per block, so every socket of one operation is in
the same namespace even if the path is replaced meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
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
        entered = _enter(netns_path)
        if entered is not None:
            failure.append(entered)
            return
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
    """A socket bound to `netns_path`'s namespace (None: the caller's); inside `sockets_kept()`,
    made by the block's thread for that namespace."""
    if netns_path is None:
        return socket.socket(family, kind, proto)
    kept: dict[str, _NetnsThread] | None = getattr(_kept, "threads", None)
    if kept is None:
        return run_in_netns(netns_path, lambda: socket.socket(family, kind, proto))
    worker = kept.get(netns_path)
    if worker is None:
        worker = kept[netns_path] = _NetnsThread(netns_path)
    return worker.socket(family, kind, proto)


_kept = threading.local()


@contextlib.contextmanager
def sockets_kept() -> Iterator[None]:
    """For the block, on this thread: one thread per namespace makes every socket asked for in it
    (see the module's note). Nested blocks share the outermost one's threads."""
    if getattr(_kept, "threads", None) is not None:
        yield
        return
    threads: dict[str, _NetnsThread] = {}
    _kept.threads = threads
    try:
        yield
    finally:
        _kept.threads = None
        for worker in threads.values():
            worker.stop()


class _NetnsThread:
    """A thread inside one namespace making sockets on request until stopped."""

    def __init__(self, netns_path: str) -> None:
        self.netns_path = netns_path
        self._requests: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[tuple[socket.socket | None, BaseException | None]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sriovkit-netns", daemon=True)
        self._thread.start()

    def socket(self, family: int, kind: int, proto: int) -> socket.socket:
        self._requests.put((family, kind, proto))
        made, failure = self._answers.get()
        if failure is not None:
            raise failure
        assert made is not None
        return made

    def stop(self) -> None:
        self._requests.put(None)
        self._thread.join()

    def _serve(self) -> None:
        try:
            refused = _enter(self.netns_path)
        except BaseException as exc:  # whatever stops it, the asking thread hears of it (never a hang)
            refused = NamespaceError(f"netns {self.netns_path}", f"cannot enter: {exc}")
        # From here on this thread stays in the target namespace until it ends; one that could not
        # enter it makes nothing, it answers every request with the namespace's error.
        while (request := self._requests.get()) is not None:
            if refused is not None:
                self._answers.put((None, refused))
                continue
            try:
                self._answers.put((socket.socket(*request), None))
            except BaseException as exc:  # handed to the asking thread
                self._answers.put((None, exc))


def _enter(netns_path: str) -> NamespaceError | None:
    """Switch this thread into the namespace: None, or the NamespaceError that stopped it."""
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return NamespaceError(f"netns {netns_path}", exc.strerror or str(exc), exc.errno)
    try:
        _setns(target)
    except OSError as exc:
        return NamespaceError(f"netns {netns_path}", f"cannot enter: {exc.strerror}", exc.errno)
    finally:
        os.close(target)
    return None


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
