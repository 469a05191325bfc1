"""The fault hook cannot fire by accident: only a simulated host root enables it, the standalone
plugin reads it from the environment only there, and the agent drops a hook it is given for a
real root. Without the variable nothing is counted or called."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sriovkit.cni.faults import ENV_KILL_AFTER, FaultPoints, parse_kill_spec
from sriovkit.commands.cni_plugin import context_from_env
from sriovkit.commands.ports import agent_cni_context, is_simulated
from sriovkit.commands.ports import fault_hook_from_env as hook_from_env
from sriovkit.sim import host as sim


@pytest.fixture
def sim_root(tmp_path: Path) -> Path:
    host = sim.create(tmp_path / "host", {"pfs": [{"name": "fz0", "numVfs": 1, "totalVfs": 2}]})
    return host.root


def test_spec_forms() -> None:
    assert parse_kill_spec("add address") == ("add address", 1)
    assert parse_kill_spec("add address@2") == ("add address", 2)
    assert parse_kill_spec("x@0") == ("x@0", 1) and parse_kill_spec("a@b") == ("a@b", 1)


def test_only_a_simulated_root_enables_the_hook(tmp_path: Path, sim_root: Path) -> None:
    env = {ENV_KILL_AFTER: "lock taken"}
    assert is_simulated(sim_root) and not is_simulated("/") and not is_simulated(tmp_path)
    assert hook_from_env(env, "/") is None
    assert hook_from_env(env, tmp_path) is None
    assert hook_from_env({}, sim_root) is None
    assert hook_from_env(env, sim_root) is not None
    assert context_from_env({**env, "SRIOVKIT_HOST_ROOT": "/"}).fault_hook is None
    assert context_from_env({**env, "SRIOVKIT_HOST_ROOT": str(sim_root)}).fault_hook is not None


def test_the_agent_drops_a_hook_for_a_real_root(sim_root: Path) -> None:
    def hook(label: str, n: int) -> None:
        raise AssertionError("must not be called")

    assert agent_cni_context("/", fault_hook=hook).fault_hook is None
    assert agent_cni_context(sim_root, fault_hook=hook).fault_hook is hook


def test_points_without_a_hook_do_nothing_and_with_one_count_occurrences() -> None:
    FaultPoints().reached("anything")
    seen: list[tuple[str, int]] = []
    points = FaultPoints(lambda label, n: seen.append((label, n)))
    for label in ("add address", "add route", "add address"):
        points.reached(label)
    assert seen == [("add address", 1), ("add route", 1), ("add address", 2)]


def test_the_kill_hook_really_kills(sim_root: Path) -> None:
    program = ("import sys\nfrom sriovkit.cni.faults import FaultPoints\n"
               "from sriovkit.commands.ports import fault_hook_from_env\n"
               f"p = FaultPoints(fault_hook_from_env({{'{ENV_KILL_AFTER}': 'b@2'}}, sys.argv[1]))\n"
               "for label in 'abab': p.reached(label); print(label, flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", program, str(sim_root)], capture_output=True, check=False,
                          env={**os.environ})
    assert proc.returncode == -9 and proc.stdout.split() == [b"a", b"b", b"a"]
    proc = subprocess.run([sys.executable, "-c", program, "/"], capture_output=True, check=False)
    assert proc.returncode == 0 and proc.stdout.split() == [b"a", b"b", b"a", b"b"]
