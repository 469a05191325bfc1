"""The native `sriov` executable's own properties: static, runs in an empty root, one file carrying
its settings, VERSION as the CNI library answers it. (Behaviour shared with the Python shim is in
test_shim.py, run against both.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sriovkit.cni.context import CniContext
from sriovkit.cni.plugin import run_cni
from sriovkit.errors import UserError
from sriovkit.host.sysfs import Sysfs
from sriovkit.shim.install import ShimSettings, install_shim, native_shim_binary, render_native_shim
from sriovkit.shim.wire import decode_request, encode_reply, exact_reader

PT_INTERP, PT_DYNAMIC = 3, 2


def _program_header_types(path: Path) -> list[int]:
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "a 64-bit ELF"
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]


def test_the_built_binary_is_static():
    types = _program_header_types(native_shim_binary())
    assert types and PT_INTERP not in types and PT_DYNAMIC not in types


def _in_empty_root(root: Path, env: dict[str, str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    def enter() -> None:
        os.chroot(root)
        os.chdir("/")

    return subprocess.run(["/sriov"], input=stdin, env=env, capture_output=True, timeout=30, preexec_fn=enter)


@pytest.mark.root
def test_runs_in_an_empty_root_holding_only_itself(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    install_shim(root, ShimSettings(agent_socket="/run/sriovkit/cni.sock", fallback_python="/usr/bin/python3",
                                    native=True))
    assert [p.name for p in root.iterdir()] == ["sriov"]  # no /dev, /proc, /tmp, libc or python in there

    version = _in_empty_root(root, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert version.returncode == 0 and json.loads(version.stdout) == {
        "cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}

    add = _in_empty_root(root, {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1"}, b'{"cniVersion": "1.0.0"}')
    err = json.loads(add.stdout)
    assert add.returncode == 1 and err["code"] == 11 and "/run/sriovkit/cni.sock" in err["msg"]
    assert "/usr/bin/python3" in err["details"]  # the configured fallback does not exist in there


@pytest.mark.root
def test_reaches_its_agent_from_an_empty_root(tmp_path):
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    install_shim(root, ShimSettings(agent_socket="/run/cni.sock", native=True))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(root / "run" / "cni.sock"))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                env, stdin = decode_request(exact_reader(conn))
                conn.sendall(encode_reply(json.dumps({"env": env, "stdin": stdin.decode()}).encode(), 0))

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        proc = _in_empty_root(root, {"CNI_COMMAND": "ADD", "CNI_IFNAME": "net1", "OTHER": "x"}, b'{"a": 1}')
        server.join(10)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {
        "env": {"CNI_COMMAND": "ADD", "CNI_IFNAME": "net1"}, "stdin": '{"a": 1}'}


@pytest.mark.parametrize("conf", [b'{"cniVersion": "0.3.1"}', b'{"cniVersion": "9.9.9"}', b'{"cniVersion": ""}',
                                  b"[]", b"", b"not json", b'{"cniVersion": "\\u00e9\\"x"}', b'{"cniVersion": 1}',
                                  b'{"name": "n"}'])
def test_version_is_what_the_cni_library_answers(tmp_path, conf):
    shim = install_shim(tmp_path, ShimSettings(agent_socket=str(tmp_path / "none.sock"), native=True))
    proc = subprocess.run([str(shim)], input=conf, env={"CNI_COMMAND": "VERSION"}, capture_output=True, timeout=30)
    context = CniContext(sysfs=Sysfs(tmp_path), netlink=None)  # type: ignore[arg-type] - VERSION touches neither
    assert (proc.stdout, proc.returncode) == run_cni({"CNI_COMMAND": "VERSION"}, conf, context)


def test_settings_block_round_trips_and_refuses_what_cannot_fit(tmp_path):
    built = native_shim_binary().read_bytes()
    once = render_native_shim(built, ShimSettings(agent_socket="/a.sock", native=True))
    twice = render_native_shim(once, ShimSettings(agent_socket="/b.sock", native=True))
    assert len(once) == len(twice) == len(built) and b"agent_socket=/b.sock\n" in twice and b"/a.sock" not in twice
    with pytest.raises(UserError, match="at most"):
        render_native_shim(built, ShimSettings(agent_socket="/" + "x" * 5000, native=True))
    with pytest.raises(UserError, match="--state-dir"):
        install_shim(tmp_path, ShimSettings(state_dir="/a\nb", native=True))
    assert list(tmp_path.iterdir()) == []


def test_install_without_a_built_binary_says_how_to_get_one(tmp_path):
    with pytest.raises(UserError, match="--python-shim"):
        install_shim(tmp_path, ShimSettings(native=True), binary=tmp_path / "nope")


def test_install_cni_installs_the_native_one_by_default(tmp_path):
    cli = [sys.executable, "-m", "sriovkit.cli", "install-cni", "--dest", str(tmp_path), "--no-fallback"]
    subprocess.run(cli, check=True, capture_output=True, timeout=60)
    assert (tmp_path / "sriov").read_bytes()[:4] == b"\x7fELF"
    subprocess.run([*cli, "--python-shim", "--python", sys.executable], check=True, capture_output=True, timeout=60)
    assert (tmp_path / "sriov").read_text().startswith(f"#!{sys.executable} -IS\n")
    assert shutil.which("sriov", path=str(tmp_path)) == str(tmp_path / "sriov")
