"""The `sriov` shim and the agent's CNI socket, over a real unix socket and a real exec.

The shim tests run against both forms `sriovctl install-cni` installs: the Python script and the
static native binary (shim/, built by ./dev setup); tests/unit/shim/test_native.py has the
native one's own (empty root, static, settings block)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from sriovkit.shim.client import AgentUnreachable, call_agent
from sriovkit.shim.install import ShimSettings, install_shim
from sriovkit.shim.server import CniSocketServer

KINDS = [pytest.param(False, id="python"), pytest.param(True, id="native")]


@pytest.fixture(params=KINDS)
def native(request):
    return request.param


@pytest.fixture
def shim(tmp_path, native):
    return install_shim(tmp_path, ShimSettings(agent_socket=str(tmp_path / "agent" / "cni.sock"),
                                               fallback_python="", interpreter=sys.executable, native=native))


def echo_handler(env, stdin):
    reply = {"env": dict(env), "stdin": stdin.decode("latin-1")}
    return json.dumps(reply).encode(), int(env.get("CNI_TEST_CODE", "0"))


@pytest.fixture
def server(tmp_path):
    srv = CniSocketServer(tmp_path / "agent" / "cni.sock", echo_handler, max_concurrent=4)
    srv.start()
    yield srv
    srv.stop()


def run_shim(shim, stdin=b"{}", **env):
    base = {"PATH": os.environ["PATH"], "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "UNRELATED": "x"}
    return subprocess.run([str(shim)], input=stdin, capture_output=True, env={**base, **env})


def test_shim_relays_env_stdin_stdout_and_exit_code(shim, server):
    payload = b'{"cniVersion": "1.0.0", "name": "n", "type": "sriov", "x": "\xc3\xa9"}'
    proc = run_shim(shim, payload, CNI_TEST_CODE="7", CNI_IFNAME="net1")
    assert proc.returncode == 7
    reply = json.loads(proc.stdout)
    assert reply["stdin"].encode("latin-1") == payload
    assert reply["env"]["CNI_IFNAME"] == "net1" and reply["env"]["CNI_COMMAND"] == "ADD"
    assert "UNRELATED" not in reply["env"] and "PATH" not in reply["env"]


def test_large_stdin_and_stdout_pass_intact(shim, server):
    payload = json.dumps({"cniVersion": "1.0.0", "blob": "y" * 300_000}).encode()
    proc = run_shim(shim, payload)
    assert proc.returncode == 0 and json.loads(proc.stdout)["stdin"].encode("latin-1") == payload


def test_oversized_stdin_is_refused_before_contacting_the_agent(shim, tmp_path):
    proc = run_shim(shim, b" " * (4 * 1024 * 1024 + 1))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == 5


def test_agent_down_without_fallback_is_a_try_again_error(shim, tmp_path):
    proc = run_shim(shim, b'{"cniVersion": "0.4.0"}')
    assert proc.returncode == 1
    err = json.loads(proc.stdout)
    assert err["code"] == 11 and err["cniVersion"] == "0.4.0" and "unreachable" in err["msg"]
    assert str(tmp_path / "agent" / "cni.sock") in err["msg"]


def _agent_down(kind, where):
    """Ways an agent is not there: (socket path, what keeps it from answering)."""
    keep = []
    if kind == "missing":
        return where / "gone" / "cni.sock", keep
    where.mkdir()
    path = where / "cni.sock"
    if kind == "regular file":
        path.write_text("not a socket")
    elif kind == "directory":
        path.mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        if kind == "hung":  # listening, never accepting, never reading
            sock.listen(0)
        keep.append(sock)  # "refusing": bound, not listening
    return path, keep


@pytest.mark.parametrize("kind", ["missing", "regular file", "directory", "refusing", "hung"])
def test_every_kind_of_absent_agent_gets_try_again_naming_the_socket(tmp_path, native, kind):
    path, keep = _agent_down(kind, tmp_path / "agent")
    try:
        shim = install_shim(tmp_path, ShimSettings(agent_socket=str(path), interpreter=sys.executable, native=native,
                                                   connect_timeout=0.5, reply_timeout=3600))
        for _ in range(3):  # a hung agent: the first call fills its backlog, the next wait in connect
            proc = subprocess.run([str(shim)], input=b'{"cniVersion": "1.0.0"}', capture_output=True, timeout=60,
                                  env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1"})
            err = json.loads(proc.stdout)
            assert proc.returncode == 1 and err["code"] == 11 and str(path) in err["msg"], proc
    finally:
        for sock in keep:
            sock.close()


def test_a_missing_fallback_interpreter_is_a_try_again_error(tmp_path, native):
    shim = install_shim(tmp_path, ShimSettings(agent_socket=str(tmp_path / "none.sock"), interpreter=sys.executable,
                                               fallback_python=str(tmp_path / "no" / "python3"), native=native))
    proc = run_shim(shim, b'{"cniVersion": "0.4.0"}')
    err = json.loads(proc.stdout)
    assert proc.returncode == 1 and err["code"] == 11 and str(tmp_path / "no" / "python3") in err["details"]


def test_agent_down_falls_back_to_in_process_execution(tmp_path, native):
    # The fallback target here is a stand-in module run by a real interpreter; the
    # real target (sriovkit.cni.plugin) is exercised by the CNI and agent tests.
    fake_root = tmp_path / "fallback"
    (fake_root / "sriovkit" / "cni").mkdir(parents=True)
    (fake_root / "sriovkit" / "__init__.py").write_text("")
    (fake_root / "sriovkit" / "cni" / "__init__.py").write_text("")
    (fake_root / "sriovkit" / "cni" / "plugin.py").write_text(
        "import os, sys\nsys.stdout.write('fallback:' + os.environ['CNI_COMMAND'] + ':' + sys.stdin.read())\n"
        "sys.exit(3)\n")
    wrapper = tmp_path / "py"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={fake_root} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    log_file = tmp_path / "shim.log"
    shim = install_shim(tmp_path, ShimSettings(agent_socket=str(tmp_path / "none.sock"), fallback_python=str(wrapper),
                                               log_file=str(log_file), interpreter=sys.executable, native=native))
    proc = run_shim(shim, b'{"a": 1}', CNI_COMMAND="DEL")
    assert proc.returncode == 3 and proc.stdout == b'fallback:DEL:{"a": 1}'
    assert "agent unreachable" in log_file.read_text() and "command=DEL" in log_file.read_text()


def test_socket_is_private(server, tmp_path):
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(server.path.parent).st_mode) == 0o700


def test_stop_removes_the_socket(tmp_path):
    srv = CniSocketServer(tmp_path / "s" / "cni.sock", echo_handler)
    srv.start()
    srv.stop()
    assert not (tmp_path / "s" / "cni.sock").exists()
    with pytest.raises(AgentUnreachable):
        call_agent(str(tmp_path / "s" / "cni.sock"), {}, b"")


def test_handler_crash_becomes_a_cni_error(tmp_path):
    def broken(env, stdin):
        raise RuntimeError("boom")

    srv = CniSocketServer(tmp_path / "cni.sock", broken)
    srv.start()
    try:
        out, code = call_agent(str(tmp_path / "cni.sock"), {"CNI_COMMAND": "ADD"}, b'{"cniVersion": "1.0.0"}')
    finally:
        srv.stop()
    err = json.loads(out)
    assert code == 1 and err["code"] == 999 and err["details"] == "boom" and err["cniVersion"] == "1.0.0"


def test_concurrency_is_bounded(tmp_path):
    running = 0
    peak = 0
    lock = threading.Lock()

    def slow(env, stdin):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return b"ok", 0

    srv = CniSocketServer(tmp_path / "cni.sock", slow, max_concurrent=3)
    srv.start()
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(call_agent(str(srv.path), {}, b"")))
                   for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        srv.stop()
    assert results == [(b"ok", 0)] * 12
    assert peak == 3


def test_install_refuses_missing_dir_and_interpreter(tmp_path):
    from sriovkit.errors import UserError

    with pytest.raises(UserError, match="not a directory"):
        install_shim(tmp_path / "missing", ShimSettings(interpreter=sys.executable))
    with pytest.raises(UserError, match="not an executable interpreter"):
        install_shim(tmp_path, ShimSettings(interpreter=str(tmp_path / "nopython")))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("native", [False], ids=["python"])
def test_installed_shim_is_standard_library_only(shim):
    text = shim.read_text()
    imports = {line.split()[1].split(".")[0] for line in text.splitlines()
               if line.startswith(("import ", "from ")) or line.startswith("    import ")}
    imports |= {line.split()[1] for line in text.splitlines() if line.strip().startswith("import ")}
    assert imports <= {"__future__", "os", "struct", "sys", "time", "_socket", "fcntl", "json", "collections"}
    assert "\nif TYPE_CHECKING:\n    from collections.abc import Callable" in text  # never imported at run time
    assert text.startswith(f"#!{sys.executable} -IS\n")
    assert stat.S_IMODE(os.stat(shim).st_mode) == 0o755


@pytest.mark.parametrize("native", [False], ids=["python"])
def test_installed_shim_carries_the_wire_codec_and_imports_no_sriovkit(shim):
    """The script is one file: sriovkit.shim.wire's code is written into it, and what it encodes
    the agent's side (sriovkit.shim.wire itself) decodes."""
    from sriovkit.shim import wire

    text = shim.read_text()
    assert "sriovkit.shim.wire import" not in text and "import sriovkit" not in text
    installed: dict[str, object] = {"__name__": "installed_shim"}
    exec(compile(text, str(shim), "exec"), installed)
    env, stdin = {"CNI_COMMAND": "ADD", "CNI_ARGS": "K8S_POD_NAME=p\xe9"}, b'{"cniVersion": "1.0.0"}'
    frame = installed["encode_request"](env, stdin)  # type: ignore[operator]
    chunks = [frame]

    def read(n: int) -> bytes:
        head, chunks[0] = chunks[0][:n], chunks[0][n:]
        return head

    assert wire.decode_request(read) == (env, stdin)
    assert installed["MAX_STDIN"] == wire.MAX_STDIN and installed["MAX_ENV_BYTES"] == wire.MAX_ENV_BYTES


def test_the_shims_own_defaults_are_the_nodes() -> None:
    """The standalone shim imports no sriovkit, so it spells its defaults itself: they must be
    nodepaths' (the installer rewrites them, a shim run as it stands uses them)."""
    from sriovkit import nodepaths
    from sriovkit.shim import client

    assert client.AGENT_SOCKET == nodepaths.CNI_SOCKET
