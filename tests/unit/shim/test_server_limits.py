"""The CNI socket server's limits, against a trivial handler over a real unix socket: frames
beyond what a CNI call carries are refused from their length, unfinished requests are dropped at
their deadline or when newer ones need the room, and a full queue answers "try again" at once."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.shim.client import call_agent
from sriovkit.shim.server import CniSocketServer
from sriovkit.shim.wire import MAX_ENV_BYTES, MAX_ENV_VARS, MAX_STDIN, decode_reply, exact_reader


def echo(env: dict[str, str], stdin: bytes) -> tuple[bytes, int]:
    return json.dumps({"command": env.get("CNI_COMMAND")}).encode(), 0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, CniSocketServer]]:
    path = tmp_path / "s" / "cni.sock"
    server = CniSocketServer(path, echo, max_concurrent=2, request_timeout=1.0, max_connections=8)
    server.start()
    try:
        yield path, server
    finally:
        server.stop()


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(str(path))
    return sock


def reply_of(sock: socket.socket) -> tuple[dict[str, object], int]:
    out, code = decode_reply(exact_reader(sock))
    return json.loads(out), code


def test_a_normal_call_is_served(served: tuple[Path, CniSocketServer]) -> None:
    path, _ = served
    assert call_agent(str(path), {"CNI_COMMAND": "ADD"}, b"{}") == (b'{"command": "ADD"}', 0)


@pytest.mark.parametrize("length", [MAX_ENV_BYTES + 1, 16 * 1024 * 1024, 2**32 - 1])
def test_an_env_block_beyond_the_limit_is_refused_from_its_length(served: tuple[Path, CniSocketServer],
                                                                  length: int) -> None:
    path, _ = served
    with connect(path) as sock:
        sock.sendall(struct.pack(">I", length))  # and nothing more: the answer must not wait for it
        body, code = reply_of(sock)
    assert code == 1 and body["code"] == 4 and str(length) in str(body["msg"])


def test_stdin_beyond_the_limit_is_refused_from_its_length(served: tuple[Path, CniSocketServer]) -> None:
    path, _ = served
    env = b"CNI_COMMAND=ADD\0"
    with connect(path) as sock:
        sock.sendall(struct.pack(">I", len(env)) + env + struct.pack(">I", MAX_STDIN + 1))
        body, code = reply_of(sock)
    assert code == 1 and body["code"] == 5


@pytest.mark.parametrize("count", [MAX_ENV_VARS + 1, 50_000])
def test_too_many_variables_are_refused_before_they_are_split(served: tuple[Path, CniSocketServer],
                                                              count: int) -> None:
    path, _ = served
    block = b"a=\0" * count
    if len(block) > MAX_ENV_BYTES:
        block = b"a\0" * (MAX_ENV_BYTES // 2)
    with connect(path) as sock:
        sock.sendall(struct.pack(">I", len(block)) + block + struct.pack(">I", 2) + b"{}")
        body, code = reply_of(sock)
    assert code == 1 and body["code"] == 4 and "variables" in str(body["msg"])


def test_a_request_not_complete_by_its_deadline_is_dropped(served: tuple[Path, CniSocketServer]) -> None:
    path, server = served
    with connect(path) as sock:
        sock.sendall(b"\0\0")  # half a length prefix, then silence
        body, code = reply_of(sock)  # bounded by the socket timeout; the server answers at its deadline
    assert code == 1 and body["code"] == 11
    assert server.refused >= 1
    assert call_agent(str(path), {"CNI_COMMAND": "DEL"}, b"{}")[1] == 0


def test_a_full_table_drops_the_oldest_unfinished_not_the_newcomer(served: tuple[Path, CniSocketServer]) -> None:
    path, _ = served
    idle = [connect(path) for _ in range(8)]
    try:
        newer = connect(path)  # the ninth: the first idle one gives way
        body, code = reply_of(idle[0])
        assert code == 1 and body["code"] == 11
        newer.close()
        assert call_agent(str(path), {"CNI_COMMAND": "ADD"}, b"{}")[1] == 0
    finally:
        for sock in idle:
            sock.close()


def test_a_full_queue_answers_try_again_at_once(tmp_path: Path) -> None:
    release, entered = threading.Event(), threading.Event()

    def blocking(env: dict[str, str], stdin: bytes) -> tuple[bytes, int]:
        entered.set()
        release.wait(30)
        return b"{}", 0

    path = tmp_path / "q" / "cni.sock"
    server = CniSocketServer(path, blocking, max_concurrent=1, max_queued=1)
    server.start()
    results: list[tuple[bytes, int]] = []

    def caller() -> None:
        results.append(call_agent(str(path), {"CNI_COMMAND": "ADD"}, b"{}"))

    callers = [threading.Thread(target=caller) for _ in range(2)]
    try:
        callers[0].start()
        assert entered.wait(20)  # the worker runs the first call
        callers[1].start()
        for _ in range(400):  # the second waits in the queue
            if server._calls.qsize() == 1:
                break
            threading.Event().wait(0.05)
        assert server._calls.qsize() == 1
        out, code = call_agent(str(path), {"CNI_COMMAND": "ADD"}, b'{"cniVersion": "1.0.0"}')
        assert code == 1 and json.loads(out)["code"] == 11
    finally:
        release.set()
        for t in callers:
            if t.is_alive() or t.ident is not None:
                t.join(30)
        server.stop()
    assert sorted(code for _, code in results) == [0, 0]


def test_a_burst_of_a_whole_node_is_queued_not_refused(tmp_path: Path) -> None:
    """With the default queue, 150 calls arriving together at a server running one at a time all
    succeed: a node starting every pod at once is served, as upstream's exec'd plugin would be."""
    gate = threading.Event()

    def slow(env: dict[str, str], stdin: bytes) -> tuple[bytes, int]:
        gate.wait(30)
        return b"{}", 0

    path = tmp_path / "b" / "cni.sock"
    server = CniSocketServer(path, slow, max_concurrent=1)
    server.start()
    codes: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        _, code = call_agent(str(path), {"CNI_COMMAND": "ADD"}, b"{}")
        with lock:
            codes.append(code)

    callers = [threading.Thread(target=caller) for _ in range(150)]
    try:
        for t in callers:
            t.start()
        for _ in range(600):  # all but the running one wait in the queue
            if server._calls.qsize() == 149:
                break
            threading.Event().wait(0.05)
        assert server._calls.qsize() == 149 and server.refused == 0
    finally:
        gate.set()
        for t in callers:
            t.join(60)
        server.stop()
    assert codes == [0] * 150
