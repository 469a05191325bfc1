"""Hostile input: fuzzed env and stdin, path escapes, planted symlinks, oversized stdin. Every
refusal is the spec's error JSON, and a refused call changes nothing on the node."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sriovkit.cni.plugin import MAX_STDIN, run_cni
from sriovkit.cni.spec import ErrorCode
from tests.reliability import scenarios
from tests.support.cni_host import Node
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root
EXAMPLES = int(os.environ.get("SRIOVKIT_FUZZ_EXAMPLES", "300"))


def _refused(node: Node, command: str, conf: dict[str, Any], netns: str, **env: str) -> dict[str, Any]:
    before = node.views()
    out, code = node.run(command, conf, netns, **env)
    assert code == 1 and isinstance(out["code"], int) and out["msg"], out
    assert node.views() == before
    return dict(out)


def test_fuzzed_env_and_stdin(tmp_path: Path) -> None:
    outcome = scenarios.fuzz_cni(tmp_path, EXAMPLES)
    assert outcome.tried >= EXAMPLES // 2
    outcome.check()


ESCAPES = ["..", "../x", "a/b", "/etc", "a\0b", "x" * 300, "net1\n", "."]


@pytest.mark.parametrize(("var", "value"), [*(("CNI_CONTAINERID", v) for v in [*ESCAPES, ".hidden", "a..b"]),
                                            *(("CNI_IFNAME", v) for v in ESCAPES)])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_names_that_would_escape_a_path(node: Node, netns: NetnsFactory, var: str, value: str, command: str) -> None:
    out = _refused(node, command, node.conf(0, vlan=5), netns(), **{var: value})
    assert out["code"] == ErrorCode.INVALID_ENV and var in out["details"]
    assert not any(node.state_dir.parent.glob("**/*x*.json"))


@pytest.mark.parametrize("device", ["../0000:00:01.0", "{vf}/../..", "{vf}/", "/sys/bus/pci/devices/{vf}", "\0",
                                    "x" * 300, "{vf}\n"])
def test_device_ids_that_would_escape_a_path(node: Node, netns: NetnsFactory, device: str) -> None:
    out = _refused(node, "ADD", node.conf(0, deviceID=device.format(vf=node.vf(0))), netns())
    assert out["code"] in (ErrorCode.INVALID_CONFIG, ErrorCode.DEVICE_UNUSABLE)
    assert not (node.state_dir / "locks").exists() or all(p.parent.name == "locks"
                                                          for p in node.state_dir.rglob("*.lock"))


@pytest.mark.parametrize("kind", ["regular-file", "directory", "fifo", "mount-ns", "host-netns", "dev-null",
                                  "symlink-to-file"])
def test_netns_that_is_not_a_pods_network_namespace(node: Node, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    path = {"regular-file": str(target), "directory": str(tmp_path), "fifo": str(tmp_path / "fifo"),
            "mount-ns": "/proc/self/ns/mnt", "host-netns": "/proc/self/ns/net", "dev-null": "/dev/null",
            "symlink-to-file": str(tmp_path / "link")}[kind]
    target.write_text("")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(target, tmp_path / "link")
    out = _refused(node, "ADD", node.conf(1, vlan=9, ipam=node.host_local()), path)
    assert out["code"] in (ErrorCode.UNKNOWN_CONTAINER, ErrorCode.INVALID_ENV), out
    assert "CNI_NETNS" in out["msg"]


@pytest.mark.parametrize("plant", ["state-dir", "locks-dir", "lock-file", "journal", "record"])
def test_symlinks_planted_in_the_state_dir(node: Node, netns: NetnsFactory, tmp_path: Path, plant: str) -> None:
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "file"
    victim.write_text("keep")
    state = node.state_dir
    if plant == "state-dir":
        state.symlink_to(victim_dir)
    else:
        (state / "locks").mkdir(parents=True, mode=0o700)
    links = {"locks-dir": (state / "locks", victim_dir), "lock-file": (state / "locks" / f"{node.vf(2)}.lock", victim),
             "journal": (state / "c1-net1.pending", victim), "record": (state / "c1-net1.json", victim)}
    if plant == "locks-dir":
        (state / "locks").rmdir()
    if plant in links:
        links[plant][0].symlink_to(links[plant][1])
    try:
        _refused(node, "ADD", node.conf(2, vlan=8, ipam=node.host_local()), netns())
        if plant == "record":
            _refused(node, "DEL", node.conf(2), netns())
        assert victim.read_text() == "keep" and sorted(p.name for p in victim_dir.iterdir()) == ["file"]
    finally:
        for path in (state, state / "locks", *(p for p, _ in links.values())):
            if path.is_symlink():
                path.unlink()
    # the runtime's DEL after the failed ADD, the planted links gone: it finds no record and removes the
    # attachment lock a refused ADD keeps while a record-like file is there
    assert node.run("DEL", node.conf(2, vlan=8, ipam=node.host_local()), netns())[1] == 0


def test_oversized_stdin_is_refused_by_run_cni_the_plugin_and_the_shim(node: Node, netns: NetnsFactory,
                                                                       tmp_path: Path) -> None:
    pod = netns()
    big = json.dumps({**node.conf(0), "padding": "x" * (MAX_STDIN + 10)}).encode()
    before = node.views()
    out, code = run_cni(node.env("ADD", pod), big, node.ctx)
    assert code == 1 and json.loads(out)["code"] == ErrorCode.IO_FAILURE and "exceeds" in json.loads(out)["msg"]
    env = scenarios.process_env(node, node.env("ADD", pod))
    for argv in ([sys.executable, "-m", "sriovkit.cni.plugin"],
                 [str(scenarios.shim_for(node, tmp_path / "bin", tmp_path / "none.sock"))]):
        proc = subprocess.run(argv, input=big, env=env, capture_output=True, timeout=60, check=False)
        assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == ErrorCode.IO_FAILURE, proc.stdout[:300]
        assert b"Traceback" not in proc.stderr
    assert node.views() == before


def test_non_utf8_and_binary_stdin_through_the_plugin_process(node: Node, netns: NetnsFactory) -> None:
    env = scenarios.process_env(node, node.env("ADD", netns()))
    for stdin in (b"\xff\xfe\x00{", b"\x00" * 100, b'{"cniVersion": "1.0.0", "name": "\xff"}'):
        proc = subprocess.run([sys.executable, "-m", "sriovkit.cni.plugin"], input=stdin, env=env,
                              capture_output=True, timeout=60, check=False)
        assert proc.returncode == 1 and scenarios.is_spec_error(proc.stdout), proc.stdout
        assert b"Traceback" not in proc.stderr


def test_oversized_stdin_sent_straight_to_the_agent_socket_is_refused(node: Node, netns: NetnsFactory,
                                                                      tmp_path: Path) -> None:
    """A client that skips the shim's check: the agent's run_cni refuses it all the same."""
    from sriovkit.agent.cni_service import CniService
    from sriovkit.shim.client import call_agent
    from sriovkit.shim.server import CniSocketServer

    server = CniSocketServer(tmp_path / "agent" / "cni.sock", CniService(node.ctx))
    server.start()
    try:
        big = json.dumps({**node.conf(0), "padding": "x" * (MAX_STDIN + 10)}).encode()
        before = node.views()
        out, code = call_agent(str(server.path), node.env("ADD", netns()), big)
        assert code == 1 and json.loads(out)["code"] == ErrorCode.IO_FAILURE
        assert node.views() == before
    finally:
        server.stop()


def test_garbage_on_the_agent_socket_never_stops_it_serving(node: Node, tmp_path: Path) -> None:
    """Frames cut short, lengths that lie, random bytes: each connection is dropped or answered,
    and the next well-formed call is served as usual."""
    import socket
    import struct

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from sriovkit.agent.cni_service import CniService
    from sriovkit.shim.client import call_agent
    from sriovkit.shim.server import CniSocketServer
    from sriovkit.shim.wire import encode_request

    server = CniSocketServer(tmp_path / "agent" / "cni.sock", CniService(node.ctx), request_timeout=2)
    server.start()
    valid = encode_request({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
    frames = st.one_of(st.binary(max_size=200), st.binary(max_size=40).map(lambda b: valid[:len(b)] + b),
                       st.integers(0, 2**32 - 1).map(lambda n: struct.pack(">I", n) + b"x" * 8))
    tried = []

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(frames)
    def one(frame: bytes) -> None:
        tried.append(frame)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(server.path))
            sock.sendall(frame)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                sock.recv(1 << 16)

    try:
        one()
        out, code = call_agent(str(server.path), {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
        assert code == 0 and json.loads(out)["cniVersion"] == "1.0.0"
    finally:
        server.stop()
    assert len(tried) >= 30
