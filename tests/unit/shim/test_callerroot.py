"""The caller's root handed to the agent with each call (SCM_RIGHTS): both shims send it, the
server links it when asked to and closes it otherwise, paths resolve inside it as the caller
resolves them."""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys

import pytest

from sriovkit.shim.callerroot import KEEP_OPEN, CallerRoot, resolve_in
from sriovkit.shim.install import ShimSettings, install_shim
from sriovkit.shim.server import CniSocketServer
from sriovkit.shim.wire import encode_request


def test_paths_resolve_inside_the_root_even_through_absolute_symlinks(tmp_path):
    root = tmp_path / "root"
    (root / "run" / "netns").mkdir(parents=True)
    (root / "run" / "netns" / "pod").write_text("")
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("/run")  # absolute: must restart at root, not at our /
    (root / "rel").symlink_to("var/run/netns")
    (root / "loop").symlink_to("/loop")
    r = str(root)
    assert resolve_in(r, "/var/run/netns/pod") == f"{r}/run/netns/pod"
    assert resolve_in(r, "/rel/pod") == f"{r}/run/netns/pod"
    assert resolve_in(r, "/../../var/run/../run/netns/pod") == f"{r}/run/netns/pod"  # never above the root
    assert resolve_in(r, "/missing/x") == f"{r}/missing/x"
    assert not os.path.exists(resolve_in(r, "/loop/x"))


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def test_link_follows_the_latest_root_and_keeps_only_a_few_open(tmp_path):
    root = CallerRoot(tmp_path / "run" / "caller-root")
    before = _open_fds()
    dirs = [tmp_path / f"d{i}" for i in range(KEEP_OPEN + 3)]
    for d in dirs:
        d.mkdir()
        root.adopt(os.open(d, os.O_RDONLY | os.O_DIRECTORY))
    assert os.path.samefile(root.link, dirs[-1])
    assert len(_open_fds() - before) == KEEP_OPEN
    root.adopt(os.open(tmp_path / "d0", os.O_RDONLY))  # an earlier root again: the link follows
    (tmp_path / "f").write_text("")
    root.adopt(os.open(tmp_path / "f", os.O_RDONLY))  # not a directory: closed, link unchanged
    assert os.path.samefile(root.link, tmp_path / "d0")
    root.close()
    assert not root.link.exists() and _open_fds() == before


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
@pytest.mark.parametrize("linked", [False, True], ids=["closed", "linked"])
def test_each_shim_sends_its_root_and_the_server_keeps_or_closes_it(tmp_path, native, linked):
    caller_root = CallerRoot(tmp_path / "link") if linked else None
    server = CniSocketServer(tmp_path / "s" / "cni.sock", lambda env, stdin: (b"ok", 0), caller_root=caller_root)
    before = _open_fds()
    server.start()
    try:
        shim = install_shim(tmp_path, ShimSettings(agent_socket=str(server.path), interpreter=sys.executable,
                                                   native=native))
        proc = subprocess.run([str(shim)], input=b"{}", env={"CNI_COMMAND": "ADD"}, capture_output=True, timeout=30)
        assert (proc.stdout, proc.returncode) == (b"ok", 0)
        if linked:
            assert os.path.samefile(tmp_path / "link", "/")
        else:
            assert not (tmp_path / "link").exists()
    finally:
        server.stop()
    assert _open_fds() - before == set()  # nothing leaked: kept ones closed by stop()


def test_a_client_sending_many_descriptors_leaks_none(tmp_path):
    server = CniSocketServer(tmp_path / "cni.sock", lambda env, stdin: (b"", 0))
    server.start()
    before = _open_fds()
    try:
        fds = [os.open("/", os.O_RDONLY) for _ in range(6)]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(str(server.path))
            data = encode_request({"CNI_COMMAND": "ADD"}, b"")
            c.sendmsg([data[:4]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
            c.sendall(data[4:])
            assert c.recv(64)
        for fd in fds:
            os.close(fd)
    finally:
        server.stop()
    assert _open_fds() - before == set()
