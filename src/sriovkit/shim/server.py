"""The agent's side of the CNI fast path: a unix-socket server for the `sriov` shim.

Each connection carries one CNI call. Calls run on a bounded pool of worker
threads; the CNI library itself serialises calls per VF. The socket is
created 0600 inside a 0700 directory: only root may ask for a VF.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sriovkit.shim.client import decode_request, encode_reply, error_reply, exact_reader

log = logging.getLogger(__name__)

CniHandler = Callable[[Mapping[str, str], bytes], tuple[bytes, int]]
CODE_INTERNAL = 999


class CniSocketServer:
    """Serves `handler(env, stdin) -> (stdout, exit_code)` on `path`."""

    def __init__(self, path: str | Path, handler: CniHandler, *, max_concurrent: int = 16,
                 request_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.handler = handler
        self.max_concurrent = max_concurrent
        self.request_timeout = request_timeout
        self._sock: socket.socket | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._bound: tuple[int, int] | None = None  # (device, inode) of the socket we listen on

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        st = os.stat(self.path)
        self._bound = (st.st_dev, st.st_ino)
        sock.listen(128)
        self._sock = sock
        self._pool = ThreadPoolExecutor(max_workers=self.max_concurrent, thread_name_prefix="cni")
        self._thread = threading.Thread(target=self._accept_loop, name="cni-accept", daemon=True)
        self._thread.start()
        log.info("cni socket listening path=%s max_concurrent=%d", self.path, self.max_concurrent)

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # let in-flight CNI calls finish: never cut one half-way
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def readiness_problems(self) -> list[str]:
        """For /readyz: the socket is ours and accepted on (a shim finds nothing to talk to otherwise)."""
        if self._thread is None or not self._thread.is_alive() or self._stopping.is_set():
            return [f"cni socket {self.path}: not serving"]
        try:
            st = os.stat(self.path)
        except OSError:
            return [f"cni socket {self.path}: removed; the sriov shim cannot reach the agent"]
        if (st.st_dev, st.st_ino) != self._bound:
            return [f"cni socket {self.path}: replaced by another file; the sriov shim cannot reach the agent"]
        return []

    def _accept_loop(self) -> None:
        assert self._sock is not None and self._pool is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            self._pool.submit(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self.request_timeout)
            try:
                env, stdin = decode_request(exact_reader(conn))
            except (OSError, ValueError, struct.error) as exc:
                log.warning("cni socket: unreadable request: %s", exc)
                return
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
            conn.settimeout(None)
            with contextlib.suppress(OSError):
                conn.sendall(encode_reply(stdout, code))


def _caller_gone(conn: socket.socket) -> bool:
    """Whether the shim at the other end has closed its side (it sends nothing after the request)."""
    poller = select.poll()
    poller.register(conn, select.POLLRDHUP | select.POLLHUP)
    return bool(poller.poll(0))
