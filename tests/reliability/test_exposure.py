"""Exposure: the narrowest modes for what the agent and the plugin create (whatever the umask),
metrics on loopback unless told otherwise, and no shell anywhere in the product."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest

from sriovkit.agent.metrics import DEFAULT_METRICS_ADDRESS, AgentMetrics, MetricsServer
from sriovkit.shim.server import CniSocketServer
from tests.reliability import scenarios
from tests.support.cni_host import Node
from tests.support.kernel import umask
from tests.support.names import NetnsFactory


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_agent_socket_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "run" / "sriovkit" / "cni.sock"
    with umask(0):
        server = CniSocketServer(path, lambda env, stdin: (b"", 0))
        server.start()
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert mode(path) == 0o600 and mode(path.parent) == 0o700
    finally:
        server.stop()


@pytest.mark.root
def test_state_files_0600_and_dirs_0700_also_for_a_journal_left_by_a_kill(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(0, vlan=4, ipam=node.host_local())
    with umask(0):
        assert node.run("ADD", conf, pod)[1] == 0
        env = scenarios.process_env(node, node.env("ADD", netns(), container="killed"),
                                    SRIOVKIT_FAULT_KILL_AFTER="vf vlan")
        assert scenarios.execute(scenarios.PLUGIN, env, node.conf(1, vlan=5))[1] == scenarios.KILLED
    state = node.state_dir
    try:
        files = sorted(p.name for p in state.iterdir() if p.is_file())
        # the finished ADD's record and its journal (kept beside it until DEL: cni.state,
        # "Durability"), the killed ADD's journal, and each one's owner marker (empty, private too)
        assert files == [f".owner+{node.vf(0)}+c1-net1", f".owner+{node.vf(1)}+killed-net1",
                         "c1-net1.json", "c1-net1.pending", "killed-net1.pending"]
        assert {p.name: mode(p) for p in state.iterdir() if p.is_file()} == dict.fromkeys(files, 0o600)
        assert mode(state) == 0o700 and mode(state / "locks") == 0o700
        assert {mode(p) for p in (state / "locks").iterdir()} == {0o600}
    finally:
        assert node.run("DEL", conf, pod) == (None, 0)
        assert node.run("DEL", node.conf(1), "", CNI_CONTAINERID="killed") == (None, 0)


def test_state_dir_made_too_open_is_tightened(tmp_path: Path) -> None:
    from sriovkit.cni.state import AttachmentRecord, StateStore

    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    StateStore(str(state)).save(AttachmentRecord("c", "n", "/x", "net", "0000:00:01.0", "netdev"))
    assert mode(state) == 0o700 and mode(state / "c-n.json") == 0o600


def test_metrics_bind_loopback_by_default() -> None:
    host, _, port = DEFAULT_METRICS_ADDRESS.rpartition(":")
    assert host in ("127.0.0.1", "[::1]", "localhost") and port.isdigit()
    server = MetricsServer(":0", AgentMetrics(), lambda: True)  # no host given: still loopback
    server.start()
    try:
        bound = server.bound_host
        assert bound in ("127.0.0.1", "::1"), bound
    finally:
        server.stop()
    for action in _agent_parser()._actions:
        if "--metrics-address" in action.option_strings:
            assert str(action.default).rpartition(":")[0] in ("127.0.0.1", "[::1]", "localhost"), action.default


def _agent_parser() -> argparse.ArgumentParser:
    from sriovkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["agent"]


# -- nothing runs a shell ---------------------------------------------------------------------

def test_the_shell_check_catches_what_it_looks_for() -> None:
    bad = """
import os, subprocess
subprocess.run("ip link", shell=True)
subprocess.run(["ip", "link", "set"])
subprocess.check_output(["/bin/sh", "-c", "x"])
os.system("reboot")
os.popen("ls")
os.execvp("bash", ["bash"])
"""
    assert len(scenarios.shell_uses(bad, "bad.py")) == 7
    assert scenarios.shell_uses("import subprocess\nsubprocess.run([binary], shell=False)\n", "ok.py") == []


def test_no_product_code_runs_a_shell_or_the_ip_tool() -> None:
    outcome = scenarios.no_shell_in_product()
    assert outcome.tried > 50
    outcome.check()
