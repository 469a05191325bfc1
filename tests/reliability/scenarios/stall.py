"""5. Stalling and blowing up the agent's CNI socket: hostile clients (slow senders, idle
connections, huge or many-variable frames) hold connections to a real agent on a veth-backed
simulated node while a normal ADD and DEL go through it. The normal calls must succeed and the
agent's peak RSS (VmHWM) stay bounded. Timings are not judged: the waits are generous bounds."""


from __future__ import annotations

import contextlib
import json
import resource
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sriovkit.shim.client import call_agent
from sriovkit.shim.wire import MAX_ENV_BYTES, MAX_STDIN
from tests.reliability.scenarios.rig import AgentProcess, Outcome, pods, sim_node
from tests.support.cni_host import Node
from tests.support.leaks import leak_report

# The agent's own budget for buffered requests is 64 MiB; twice that plus the interpreter is
# still far from the gigabytes an unbounded decoder reached.
PEAK_RSS_GROWTH_LIMIT_MB = 192
NORMAL_CALL_TIMEOUT_S = 120.0

Attack = Callable[[Path, threading.Event], contextlib.AbstractContextManager[None]]


def memory_kb(pid: int) -> dict[str, int]:
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(path))
    return sock


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


@contextlib.contextmanager
def slow_senders(path: Path, stop: threading.Event, clients: int = 16, gap_s: float = 5.0,
                 pattern: str = "header") -> Iterator[None]:
    """`clients` connections, each sending a valid-looking request one byte every `gap_s`
    (pattern "header": from the length prefix; "body": the prefix at once, then the body
    byte by byte; "stdin": a whole env block, then stdin trickling), reconnecting when dropped."""
    env = b"CNI_COMMAND=ADD\0CNI_CONTAINERID=slow\0"
    frames = {"header": struct.pack(">I", len(env)) + env,
              "body": struct.pack(">I", 4096) + b"A=" + b"b" * 4094,
              "stdin": struct.pack(">I", len(env)) + env + struct.pack(">I", 1024) + b"{" * 1024}
    frame = frames[pattern]
    start_at = {"header": 0, "body": 4, "stdin": len(env) + 8}[pattern]

    def one() -> None:
        while not stop.is_set():
            try:
                with _connect(path) as sock:
                    sock.sendall(frame[:start_at])
                    for byte in frame[start_at:]:
                        if stop.wait(gap_s):
                            return
                        sock.sendall(bytes([byte]))
            except OSError:
                if stop.wait(0.5):
                    return

    with _threads([one] * clients, stop):
        yield


@contextlib.contextmanager
def idle_connections(path: Path, stop: threading.Event, count: int = 2000) -> Iterator[None]:
    """`count` connections opened and held without sending anything."""
    _raise_fd_limit(count + 512)
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                held.append(_connect(path))
            except OSError:
                time.sleep(0.01)  # a full backlog: the agent is accepting, try on
        yield
    finally:
        for sock in held:
            sock.close()


def _frame_sender(path: Path, stop: threading.Event, frame: bytes, pause_s: float = 0.2) -> Callable[[], None]:
    def send() -> None:
        while not stop.is_set():
            try:
                with _connect(path) as sock:
                    sock.sendall(frame)
                    sock.settimeout(5)
                    with contextlib.suppress(OSError):
                        sock.recv(4096)
            except OSError:
                pass
            if stop.wait(pause_s):
                return
    return send


@contextlib.contextmanager
def huge_frames(path: Path, stop: threading.Event, clients: int = 16, shape: str = "tiny-vars") -> Iterator[None]:
    """`clients` senders of frames no CNI call can carry, sent in full, over and over: "tiny-vars"
    a 16 MiB env block of 1.8 M two-byte variables (as the issue's attack); "many-vars" an env
    block within the byte limit but of tens of thousands of variables; "max-stdin" env plus a
    stdin of exactly the 4 MiB limit; "over-stdin" a stdin just over it."""
    env = b"CNI_COMMAND=VERSION\0"
    if shape == "tiny-vars":
        block = b"a=\0" * (16 * 1024 * 1024 // 3)
        frame = struct.pack(">I", len(block)) + block + struct.pack(">I", 2) + b"{}"
    elif shape == "many-vars":
        block = b"a\0" * (MAX_ENV_BYTES // 2)
        frame = struct.pack(">I", len(block)) + block + struct.pack(">I", 2) + b"{}"
    elif shape == "max-stdin":
        frame = struct.pack(">I", len(env)) + env + struct.pack(">I", MAX_STDIN) + b" " * MAX_STDIN
    else:
        frame = struct.pack(">I", len(env)) + env + struct.pack(">I", MAX_STDIN + 1) + b" " * (MAX_STDIN + 1)
    with _threads([_frame_sender(path, stop, frame)] * clients, stop):
        yield


@contextlib.contextmanager
def _threads(bodies: list[Callable[[], None]], stop: threading.Event) -> Iterator[None]:
    threads = [threading.Thread(target=b, daemon=True) for b in bodies]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(30)


def normal_calls_under(tmp: Path, name: str, attack: Attack, *, settle_s: float = 2.0, rounds: int = 2) -> Outcome:
    """A real agent; the attack started and given `settle_s` to take hold; then `rounds` normal
    ADD+DEL (a fresh pod each) through the agent's socket while it goes on. Failures: a normal
    call that did not succeed, a peak RSS beyond PEAK_RSS_GROWTH_LIMIT_MB over the start."""
    out = Outcome(f"stall: normal ADD/DEL while {name}")
    with sim_node(tmp, num_vfs=2) as node, pods() as make_pod:
        before = node.views()
        socket_path = tmp / "agent" / "cni.sock"
        with AgentProcess(node, socket_path) as agent:
            conf = json.dumps(node.conf(0, vlan=7, ipam=node.host_local("10.71.0.0/24"))).encode()
            _normal_round(out, node, socket_path, conf, make_pod(), "warm")  # imports and sockets warm
            base = memory_kb(agent.proc.pid)["VmRSS"]
            stop = threading.Event()
            with attack(socket_path, stop):
                if stop.wait(settle_s):
                    pass
                for n in range(rounds):
                    _normal_round(out, node, socket_path, conf, make_pod(), f"under attack {n}")
                peak = memory_kb(agent.proc.pid)["VmHWM"]
            if not agent.alive():
                out.fail("agent", "died during the attack")
            growth_mb = (peak - base) / 1024
            out.tried += 1
            if growth_mb > PEAK_RSS_GROWTH_LIMIT_MB:
                out.fail("memory", f"peak RSS {peak / 1024:.0f} MB, {growth_mb:.0f} MB over the "
                         f"{base / 1024:.0f} MB before the attack (limit {PEAK_RSS_GROWTH_LIMIT_MB})")
            out.scenario += f" (peak RSS +{max(growth_mb, 0):.0f} MB)"
            _normal_round(out, node, socket_path, conf, make_pod(), "after")
        out.leaks += leak_report(node, before)
    return out


def _normal_round(out: Outcome, node: Node, socket_path: Path, conf: bytes, pod: str, case: str) -> None:
    container = f"st{case.replace(' ', '')}{int(time.monotonic() * 1000) % 100000}"
    for command in ("ADD", "DEL"):
        out.tried += 1
        try:
            reply, code = _call_retrying(socket_path, node.env(command, pod, container=container), conf)
        except OSError as exc:
            out.fail(f"{case} {command}", f"no answer: {exc}")
            return
        if code != 0:
            out.fail(f"{case} {command}", reply[:300].decode(errors="replace"))
            return


def _call_retrying(socket_path: Path, env: dict[str, str], conf: bytes) -> tuple[bytes, int]:
    """What a runtime does: a "try again" (CNI error 11) is retried, within a generous bound."""
    deadline = time.monotonic() + NORMAL_CALL_TIMEOUT_S
    while True:
        reply, code = call_agent(str(socket_path), env, conf, connect_timeout=10, reply_timeout=NORMAL_CALL_TIMEOUT_S)
        busy = code != 0 and b'"code": 11' in reply
        if not busy or time.monotonic() > deadline:
            return reply, code
        time.sleep(0.2)


def socket_attacks(tmp: Path, *, full: bool = False) -> Outcome:
    """Every attack in turn (the reliability report's row)."""
    out = Outcome("stall: CNI socket under hostile clients")
    gap = 5.0 if full else 2.0
    cases: list[tuple[str, Attack]] = [
        ("16 slow-loris clients", lambda p, s: slow_senders(p, s, gap_s=gap)),
        ("16 slow senders of a body", lambda p, s: slow_senders(p, s, gap_s=gap, pattern="body")),
        ("16 slow senders of stdin", lambda p, s: slow_senders(p, s, gap_s=gap, pattern="stdin")),
        ("2000 idle connections", lambda p, s: idle_connections(p, s)),
        ("16 x 16 MiB env blocks of tiny variables", lambda p, s: huge_frames(p, s)),
        ("16 env blocks of 131072 variables", lambda p, s: huge_frames(p, s, shape="many-vars")),
        ("16 x 4 MiB stdin", lambda p, s: huge_frames(p, s, shape="max-stdin")),
        ("16 stdins over the limit", lambda p, s: huge_frames(p, s, shape="over-stdin")),
    ]
    for n, (name, attack) in enumerate(cases):
        case_dir = tmp / f"case{n}"
        case_dir.mkdir()
        out.merge(normal_calls_under(case_dir, name, attack))
    return out
