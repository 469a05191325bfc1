#!/usr/bin/python3 -IS
"""The `sriov` CNI executable: a tiny client of the sriovkit node agent.

The container runtime execs this once per pod interface, so it must start in
milliseconds: standard library only, no `site`, Python 3.8 or newer. It sends
the CNI environment and stdin to the agent over a unix socket and relays the
agent's answer (stdout bytes and exit status) unchanged.

When the agent cannot be reached, it runs the same CNI library in-process
(`FALLBACK_PYTHON -m sriovkit.cni.plugin`) so pods still start, and says so in
the log. `sriovctl install-cni` writes this file with the settings below filled in.

The wire format is `sriovkit.shim.wire`'s: its code is written into this file where it is
imported, so the installed shim is one file that needs nothing but the standard library.
"""

from __future__ import annotations

# The C module directly: `socket.py` pulls in enum and friends, a third of the
# shim's start-up time, for conveniences it does not use.
import _socket
import fcntl
import os
import struct
import sys
import time

# --- the wire codec, sriovkit/shim/wire.py: `sriovctl install-cni` writes its code in here -----
from sriovkit.shim.wire import (
    CODE_IO_FAILURE,
    CODE_TRY_AGAIN,
    MAX_STDIN,
    cni_env,
    decode_reply,
    encode_request,
    error_reply,
    exact_reader,
)

# --- end of the wire codec ---------------------------------------------------------------

TYPE_CHECKING = False  # typing itself would cost the shim an import; mypy honours this name
if TYPE_CHECKING:
    from collections.abc import Callable

    Reader = Callable[[int], bytes]

# --- settings, rewritten by `sriovctl install-cni` -------------------------------
AGENT_SOCKET = "/run/sriovkit/cni.sock"  # nodepaths.CNI_SOCKET (this file imports no sriovkit)
FALLBACK_PYTHON = ""  # interpreter with sriovkit installed; "" = no fallback
LOG_FILE = ""  # "" = log to stderr only
HOST_ROOT = ""  # the agent's --host-root, so the fallback acts on the same node ("" = env or /)
STATE_DIR = ""  # the agent's CNI state dir ("" = env or /var/lib/cni/sriov)
DEVINFO_DIR = ""  # the agent's --cni-devinfo-dir ("" = env or /var/run/k8s.cni.cncf.io/devinfo)
LOG_DIR = ""  # the agent's --cni-log-dir ("" = env or /var/log)
CONNECT_TIMEOUT = 2.0
REPLY_TIMEOUT = 300.0
# ----------------------------------------------------------------------------------

SIOCOUTQ = 0x5411  # linux/sockios.h (= TIOCOUTQ)



class AgentUnreachable(Exception):
    """Nothing was sent: it is safe to run the operation elsewhere."""


class AgentNotTaking(Exception):
    """Sent, but the agent did not read it in time (hung or saturated): it may still read it
    later, so the operation must not run elsewhere; the runtime retries it."""


def call_agent(path: str, env: dict[str, str], stdin: bytes, connect_timeout: float = CONNECT_TIMEOUT,
               reply_timeout: float = REPLY_TIMEOUT) -> tuple[bytes, int]:
    """Send one CNI call to the agent; returns (stdout bytes, exit code)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(connect_timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise AgentUnreachable(f"{path}: {exc.strerror or exc}") from None
        # Until the agent has read the whole request nothing was acted on: bound that by the
        # connect timeout, then wait for the answer as long as an operation may take.
        try:
            _send_with_root(sock, encode_request(env, stdin))
        except TimeoutError:
            raise AgentNotTaking(f"{path}: the agent did not take the call within {connect_timeout:g}s") from None
        except (BrokenPipeError, ConnectionResetError):
            # the agent refused the call before reading all of it (busy, or a frame beyond its
            # limits) and said why: that answer is the reply
            sock.settimeout(connect_timeout)
            try:
                return decode_reply(exact_reader(sock))
            except (OSError, ValueError, struct.error):
                raise AgentNotTaking(f"{path}: the agent closed the connection before taking the call") from None
        if not _wait_taken(sock, time.monotonic() + connect_timeout):
            raise AgentNotTaking(f"{path}: the agent did not take the call within {connect_timeout:g}s")
        sock.settimeout(reply_timeout)
        return decode_reply(exact_reader(sock))
    finally:
        sock.close()


def _send_with_root(sock: _socket.socket, data: bytes) -> None:
    """Send `data`, the first bytes with a descriptor of our root directory (SCM_RIGHTS): an agent
    whose pod lacks the host's /var/run/netns and /opt/cni/bin reaches the paths we pass through it
    (sriovkit.shim.callerroot). An agent that does not want it closes it."""
    try:
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        sock.sendall(data)
        return
    try:
        sent = sock.sendmsg([data[:4]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", root))])
    finally:
        os.close(root)
    sock.sendall(data[sent:])


def _wait_taken(sock: _socket.socket, deadline: float) -> bool:
    """Whether the agent read all we sent by `deadline` (SIOCOUTQ: sent and not yet read)."""
    pause = 0.0001
    while True:
        try:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return True  # a kernel that refuses the ioctl: wait for the reply as before
        if queued == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.02)


def log(message: str) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} sriov-shim pid={os.getpid()} {message}\n"
    if LOG_FILE:
        try:
            fd = os.open(LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            return
        except OSError:
            pass
    sys.stderr.write(line)


def read_stdin() -> bytes | None:
    data = sys.stdin.buffer.read(MAX_STDIN + 1)
    if len(data) > MAX_STDIN:
        return None
    return data


def run_fallback(env_all: dict[str, str], stdin: bytes) -> None:
    """Exec the in-process CNI library with the same environment and stdin.

    stdin was already consumed, so it is replayed from an anonymous memory file. The agent's host
    root, state dir, device-info and log directories (written in by `sriovctl install-cni`) win
    over the environment, as they do in the agent, so both paths act on the same node."""
    if HOST_ROOT:
        env_all["SRIOVKIT_HOST_ROOT"] = HOST_ROOT
    if STATE_DIR:
        env_all["SRIOVKIT_CNI_STATE_DIR"] = STATE_DIR
    if DEVINFO_DIR:
        env_all["SRIOVKIT_CNI_DEVINFO_DIR"] = DEVINFO_DIR
    if LOG_DIR:
        env_all["SRIOVKIT_CNI_LOG_DIR"] = LOG_DIR
    fd = os.memfd_create("sriov-cni-stdin")
    os.write(fd, stdin)
    os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)
    os.execve(FALLBACK_PYTHON, [FALLBACK_PYTHON, "-m", "sriovkit.cni.plugin"], env_all)


def main() -> int:
    env_all = dict(os.environ)
    env = cni_env(env_all)
    stdin = read_stdin()
    if stdin is None:
        out, code = error_reply(env, b"", CODE_IO_FAILURE, f"network config on stdin exceeds {MAX_STDIN} bytes")
        sys.stdout.buffer.write(out)
        return code
    socket_path = env_all.get("SRIOVKIT_AGENT_SOCKET", AGENT_SOCKET)
    try:
        out, code = call_agent(socket_path, env, stdin)
    except AgentNotTaking as exc:
        out, code = error_reply(env, stdin, CODE_TRY_AGAIN, f"sriovkit agent not answering at {socket_path}", str(exc))
    except AgentUnreachable as exc:
        if not FALLBACK_PYTHON or not os.access(FALLBACK_PYTHON, os.X_OK):
            where = "" if not FALLBACK_PYTHON else " and no in-process fallback on this host"
            out, code = error_reply(env, stdin, CODE_TRY_AGAIN, f"sriovkit agent unreachable at {socket_path}{where}",
                                    str(exc) + (f"; fallback interpreter {FALLBACK_PYTHON} not found" if where else ""))
        else:
            command, container = env.get("CNI_COMMAND", ""), env.get("CNI_CONTAINERID", "")[:12]
            log(f"agent unreachable ({exc}); running the CNI in-process, slower: "
                f"command={command} container={container}")
            try:
                run_fallback(env_all, stdin)
            except OSError as failed:  # execve returns only on failure
                out, code = error_reply(env, stdin, CODE_TRY_AGAIN, f"sriovkit agent unreachable at {socket_path} "
                                        "and the in-process fallback could not start", f"{exc}; {failed}")
    except (OSError, ValueError, struct.error) as exc:
        # The request may have been acted on: never repeat it elsewhere.
        out, code = error_reply(env, stdin, CODE_TRY_AGAIN, f"sriovkit agent failed mid-call at {socket_path}",
                                str(exc))
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
