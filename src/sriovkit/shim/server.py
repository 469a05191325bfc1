"""The agent's side of the CNI fast path: a unix-socket server for the `sriov` shim.

Each connection carries one CNI call. The socket is 0600 (sriovkit.unixsocket): only root may
ask for a VF. But root's processes are not all well-behaved, so no client can stall the others
or make the agent grow:

- One reader thread takes every request off the wire with non-blocking reads, so a client
  that sends slowly, or connects and sends nothing, holds no worker. Each request must be
  complete within `request_timeout` of being accepted (a deadline for the whole request, not
  per read); a shim sends its request at once.
- At most `max_connections` requests are being read at a time; when a new one finds the table
  full, the oldest unfinished one is dropped (answered "try again"), so a flood of idle
  connections cannot lock out a real call, which completes within milliseconds of connecting.
- Frames are limited to what a CNI call can carry (wire.MAX_ENV_BYTES, MAX_ENV_VARS,
  MAX_STDIN): a larger one is refused from its 4-byte length alone, before anything is read.
  Buffers are allocated as the bytes arrive and, with what running calls decode from them,
  never exceed `max_buffered` in all (the oldest unfinished reads give way first); a request
  that cannot fit is answered "try again".
- Complete requests wait in a queue of `max_queued` for the `max_concurrent` workers; when it
  is full the call is answered "try again" (CNI error 11) at once, which the runtime retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import resource
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sriovkit import logs, unixsocket
from sriovkit.shim.callerroot import CallerRoot
from sriovkit.shim.wire import (
    CODE_INTERNAL,
    CODE_INVALID_ENV,
    CODE_IO_FAILURE,
    CODE_TRY_AGAIN,
    MAX_ENV_BYTES,
    MAX_STDIN,
    EnvBlockError,
    decode_env_block,
    encode_reply,
    error_reply,
)

log = logging.getLogger(__name__)

CniHandler = Callable[[Mapping[str, str], bytes], tuple[bytes, int]]
_SWEEP_S = 0.2  # how often deadlines are checked
_REPLY_SEND_TIMEOUT_S = 30.0  # a client that does not read its (small) reply
_CHUNK = 64 * 1024
DEFAULT_MAX_QUEUED = 512
# A call's stdin is copied and decoded while it runs: it weighs this many times its size in the
# budget, so the budget bounds what calls cost, not only what they send.
STDIN_WEIGHT = 16
MAX_FDS = 4  # a shim sends one descriptor (its root directory) with the request; more are closed


@dataclass(eq=False)
class _Request:
    """A connection whose request is being read: length prefix, env block, length prefix, stdin."""

    conn: socket.socket
    deadline: float
    header: bytearray = field(default_factory=bytearray)
    body: bytearray | None = None
    filled: int = 0
    env_block: bytes | None = None
    reserved: int = 0
    fds: list[int] = field(default_factory=list)  # sent along (SCM_RIGHTS): ours to close or hand on

    def want(self) -> int:
        return 4 - len(self.header) if self.body is None else len(self.body) - self.filled


@dataclass(frozen=True)
class _Call:
    conn: socket.socket
    env: dict[str, str]
    stdin: bytes
    reserved: int
    fds: tuple[int, ...] = ()


class CniSocketServer:
    """Serves `handler(env, stdin) -> (stdout, exit_code)` on `path`."""

    def __init__(self, path: str | Path, handler: CniHandler, *, max_concurrent: int = 16,
                 request_timeout: float = 10.0, max_connections: int = 1024, max_queued: int | None = None,
                 max_buffered: int = 80 * 1024 * 1024, caller_root: CallerRoot | None = None) -> None:
        self.path = Path(path)
        self.handler = handler
        self.max_concurrent = max_concurrent
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        # enough for a node starting every pod at once (kubelet's maxPods is 110, each with a few
        # networks) to be queued rather than refused: upstream's exec'd plugin never refuses one.
        # Memory stays bounded by max_buffered whatever the queue holds.
        self.max_queued = max_queued if max_queued is not None else max(DEFAULT_MAX_QUEUED, 4 * max_concurrent)
        self.max_buffered = max(max_buffered, MAX_ENV_BYTES + STDIN_WEIGHT * MAX_STDIN)
        self.caller_root = caller_root  # None: the root descriptor a shim sends is closed unused
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._calls: queue.Queue[_Call | None] = queue.Queue(maxsize=self.max_queued)
        # workers start as calls need them, as in a ThreadPoolExecutor: an idle one is reused
        # first, so a node with one call at a time keeps one worker (and its netlink sockets)
        self._idle = threading.Semaphore(0)
        self._reading: dict[socket.socket, _Request] = {}  # insertion order: oldest first
        self._buffered = 0
        self._buffered_lock = threading.Lock()
        self._stopping = threading.Event()
        self._identity: unixsocket.SocketIdentity | None = None
        self.refused = 0  # calls answered "try again" or dropped by the limits, for tests and logs

    # -- lifecycle -----------------------------------------------------------------------
    def check_conflicts(self) -> None:
        """Before anything starts: raise SocketInUseError when another process serves on our path."""
        unixsocket.check_free(self.path, "--cni-socket")

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _raise_open_files_limit(self.max_connections + 256)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

        def listen(staged: Path) -> None:
            sock.bind(str(staged))
            sock.listen(512)

        try:
            self._identity = unixsocket.serve_at(self.path, listen, "--cni-socket")
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        self._stopping.clear()
        self._workers = []
        self._thread = threading.Thread(target=self._read_loop, name="cni-reader", daemon=True)
        self._thread.start()
        log.info("cni socket listening path=%s max_concurrent=%d", self.path, self.max_concurrent)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        for request in list(self._reading.values()):
            self._drop(request)
        for _ in self._workers:
            self._calls.put(None)  # after what is queued: in-flight and queued calls finish, never cut half-way
        for worker in self._workers:
            worker.join()
        self._workers = []
        if self.caller_root is not None:
            self.caller_root.close()
        unixsocket.remove_if_ours(self.path, self._identity)  # never another agent's socket

    def readiness_problems(self) -> list[str]:
        """For /readyz: the socket is ours and accepted on (a shim finds nothing to talk to otherwise)."""
        if self._thread is None or not self._thread.is_alive() or self._stopping.is_set():
            return [f"cni socket {self.path}: not serving"]
        now = unixsocket.SocketIdentity.of(self.path)
        if now is None:
            return [f"cni socket {self.path}: removed; the sriov shim cannot reach the agent"]
        if now != self._identity:
            return [f"cni socket {self.path}: replaced by another file; the sriov shim cannot reach the agent"]
        return []

    # -- reading requests (one thread, non-blocking) ---------------------------------------
    def _read_loop(self) -> None:
        assert self._sock is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            last_sweep = time.monotonic()
            while not self._stopping.is_set():
                for key, _ in sel.select(_SWEEP_S):
                    if key.fileobj is self._sock:
                        self._accept_all(sel)
                    else:
                        conn = key.fileobj  # every other registration is a connection's socket
                        request = self._reading.get(conn) if isinstance(conn, socket.socket) else None
                        if request is not None:
                            self._read_some(sel, request)
                now = time.monotonic()
                if now - last_sweep >= _SWEEP_S:
                    last_sweep = now
                    self._expire(sel, now)

    def _accept_all(self, sel: selectors.BaseSelector) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving what we hold
                log.warning("cni socket: accept failed: %s", exc)
                return
            conn.setblocking(False)
            if len(self._reading) >= self.max_connections:
                self._evict_oldest(sel, "too many connections being read")
            request = _Request(conn, time.monotonic() + self.request_timeout)
            self._reading[conn] = request
            sel.register(conn, selectors.EVENT_READ)

    def _read_some(self, sel: selectors.BaseSelector, request: _Request) -> None:
        try:
            if request.body is None:
                chunk = _recv_keeping_fds(request.conn, request.want(), request.fds)
                if not chunk:
                    self._forget(sel, request)
                    return
                request.header += chunk
            else:
                view = memoryview(request.body)[request.filled:]
                got = request.conn.recv_into(view, min(len(view), _CHUNK))
                if got == 0:
                    self._forget(sel, request)
                    return
                request.filled += got
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._forget(sel, request)
            return
        if request.want() == 0:
            self._advance(sel, request)

    def _advance(self, sel: selectors.BaseSelector, request: _Request) -> None:
        """A part is complete: take the next length prefix, or hand the call to the workers."""
        if request.body is None:  # a length prefix
            (length,) = struct.unpack(">I", request.header)
            first = request.env_block is None
            limit = MAX_ENV_BYTES if first else MAX_STDIN
            if length > limit:
                what = "CNI environment block" if first else "network config on stdin"
                self._refuse(sel, request, CODE_INVALID_ENV if first else CODE_IO_FAILURE,
                             f"{what} of {length} bytes exceeds the {limit} a CNI call can carry")
                return
            if not self._reserve(sel, request, length * (1 if first else STDIN_WEIGHT)):
                self._refuse(sel, request, CODE_TRY_AGAIN, "sriovkit agent busy: try again")
                return
            request.body, request.filled = bytearray(length), 0
            if length:
                return
        if request.env_block is None:
            request.env_block, request.body, request.header = bytes(request.body), None, bytearray()
            return
        sel.unregister(request.conn)
        del self._reading[request.conn]
        try:
            env = decode_env_block(request.env_block)
        except EnvBlockError as exc:
            self._answer_now(request.conn, CODE_INVALID_ENV, str(exc))
            self._release(request.reserved)
            _close_all(request.fds)
            return
        call = _Call(request.conn, env, bytes(request.body), request.reserved, tuple(request.fds))
        request.body, request.fds = None, []
        try:
            self._calls.put_nowait(call)
            self._ensure_worker()
        except queue.Full:
            self.refused += 1
            log.warning("cni call refused, %d calls already queued command=%s container=%s", self.max_queued,
                        env.get("CNI_COMMAND"), env.get("CNI_CONTAINERID", "")[:12])
            self._answer_now(request.conn, CODE_TRY_AGAIN, "sriovkit agent busy: try again", env, call.stdin)
            self._release(call.reserved)
            _close_all(call.fds)

    def _reserve(self, sel: selectors.BaseSelector, request: _Request, length: int) -> bool:
        """Room for `length` more buffered bytes, made by dropping the oldest unfinished reads."""
        while True:
            with self._buffered_lock:
                if self._buffered + length <= self.max_buffered:
                    self._buffered += length
                    request.reserved += length
                    return True
            victim = next((r for r in self._reading.values() if r is not request and r.reserved), None)
            if victim is None:
                return False
            self._refuse(sel, victim, CODE_TRY_AGAIN, "sriovkit agent busy: try again")

    def _release(self, amount: int) -> None:
        with self._buffered_lock:
            self._buffered -= amount

    def _expire(self, sel: selectors.BaseSelector, now: float) -> None:
        for request in [r for r in self._reading.values() if r.deadline <= now]:
            log.warning("cni socket: request not complete within %gs, dropped", self.request_timeout)
            self._refuse(sel, request, CODE_TRY_AGAIN, f"request not complete within {self.request_timeout:g}s")

    def _evict_oldest(self, sel: selectors.BaseSelector, why: str) -> None:
        oldest = next(iter(self._reading.values()))
        log.warning("cni socket: %s (%d), dropping the oldest unfinished one", why, len(self._reading))
        self._refuse(sel, oldest, CODE_TRY_AGAIN, "sriovkit agent busy: try again")

    def _refuse(self, sel: selectors.BaseSelector, request: _Request, code: int, msg: str) -> None:
        self.refused += 1
        self._answer_now(request.conn, code, msg, keep_open=True)
        self._forget(sel, request)

    def _forget(self, sel: selectors.BaseSelector, request: _Request) -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(request.conn)
        self._drop(request)

    def _drop(self, request: _Request) -> None:
        self._reading.pop(request.conn, None)
        self._release(request.reserved)
        request.reserved, request.body = 0, None
        _close_all(request.fds)
        request.conn.close()

    @staticmethod
    def _answer_now(conn: socket.socket, code: int, msg: str, env: Mapping[str, str] | None = None,
                    stdin: bytes = b"", *, keep_open: bool = False) -> None:
        """Best effort, never blocking: the spec's error JSON as the reply, then close (unless the
        caller closes)."""
        out, status = error_reply(dict(env or {}), stdin, code, msg)
        with contextlib.suppress(OSError):
            conn.send(encode_reply(out, status))
        if not keep_open:
            conn.close()

    # -- running calls -------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._idle.acquire(blocking=False) or len(self._workers) >= self.max_concurrent:
            return
        worker = threading.Thread(target=self._work, name=f"cni-{len(self._workers)}", daemon=True)
        self._workers.append(worker)
        worker.start()

    def _work(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            try:
                self._serve(call)
            finally:
                self._release(call.reserved)
                self._idle.release()

    def _serve(self, call: _Call) -> None:
        env, stdin = call.env, call.stdin
        for fd in call.fds:  # before the call: it reaches the caller's paths through the newest root
            if self.caller_root is not None:
                self.caller_root.adopt(fd)
            else:
                os.close(fd)
        with call.conn as conn, logs.context(**logs.cni_call_fields(env)):
            if _caller_gone(conn):
                # it waited for us to read its request and gave up (the shim's answer was "try
                # again"): acting now would race the runtime's retry
                log.warning("cni call skipped: its caller left before it was read command=%s container=%s",
                            env.get("CNI_COMMAND"), env.get("CNI_CONTAINERID", "")[:12])
                return
            try:
                stdout, code = self.handler(env, stdin)
            except Exception as exc:  # the top of a request: answer with the spec's error, keep serving
                log.exception("cni call failed unexpectedly command=%s", env.get("CNI_COMMAND"))
                stdout, code = error_reply(env, stdin, CODE_INTERNAL, "internal error in sriovkit agent", str(exc))
            conn.setblocking(True)
            conn.settimeout(_REPLY_SEND_TIMEOUT_S)
            with contextlib.suppress(OSError):
                conn.sendall(encode_reply(stdout, code))


def _recv_keeping_fds(conn: socket.socket, size: int, fds: list[int]) -> bytes:
    """recv(size), appending descriptors sent along (SCM_RIGHTS) to `fds` (a plain recv would
    have the kernel close them)."""
    data, ancillary, _, _ = conn.recvmsg(size, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return data


def _close_all(fds: list[int] | tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    if isinstance(fds, list):
        fds.clear()


def _caller_gone(conn: socket.socket) -> bool:
    """Whether the shim at the other end has closed its side (it sends nothing after the request)."""
    poller = select.poll()
    poller.register(conn, select.POLLRDHUP | select.POLLHUP)
    return bool(poller.poll(0))


def _raise_open_files_limit(wanted: int) -> None:
    """Connections being read are descriptors: let the soft limit reach `wanted` (up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
