"""The agent loads every CNI command's code once it starts (agent.cni_service.CniWarmUp), then
builds its netlink port (commands.ports.prepare_cni), so the first pods after a start wait for
neither; a standalone plugin process still imports only the command it runs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from sriovkit.agent.cni_service import CniWarmUp
from sriovkit.cni.context import CniContext
from sriovkit.commands.ports import prepare_cni
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.lazy import LazyNetlink
from sriovkit.sim.marker import SIM_MARKER

COMMANDS = ("sriovkit.cni.attach", "sriovkit.cni.detach", "sriovkit.cni.lifecycle")

PROGRAM = f"""
import json, sys
from sriovkit.agent.cni_service import CniWarmUp
commands = {COMMANDS!r}
before = [m for m in commands if m in sys.modules]
warm = CniWarmUp()
warm.start()
warm.join(60)
after = [m for m in commands if m in sys.modules]
warm.stop()
print(json.dumps({{"before": before, "after": after}}))
"""


def test_warm_up_imports_every_command_and_nothing_did_before() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, timeout=120)
    seen = json.loads(out.stdout)
    assert seen == {"before": [], "after": list(COMMANDS)}


def test_the_agent_starts_the_warm_up_with_its_cni_socket() -> None:
    program = ("import argparse, sys\n"
               "from sriovkit.agent.metrics import AgentMetrics\n"
               "from sriovkit.commands.agent import _cni_and_metrics\n"
               "args = argparse.Namespace(cni_max_concurrent=4, cni_socket=sys.argv[1], cni_caller_root_link='',\n"
               "    host_root='/', cni_state_dir=sys.argv[2], cni_devinfo_dir=sys.argv[2], cni_log_dir=sys.argv[2],\n"
               "    cni_gc_seconds=0, metrics_address='')\n"
               "built = _cni_and_metrics(None, args, AgentMetrics(), observers=[])\n"
               "print(' '.join(type(c).__name__ for c in built))\n")
    out = subprocess.run([sys.executable, "-c", program, "/nonexistent/cni.sock", "/nonexistent/state"],
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["CniSocketServer", "CniWarmUp"]


def test_warm_up_runs_prepare_once_and_survives_its_failure(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def prepare() -> None:
        seen.append("prepared")
        raise OSError("netlink socket refused")

    warm = CniWarmUp(prepare)
    with caplog.at_level(logging.WARNING, logger="sriovkit.agent.cni_service"):
        warm.start()
        warm.join(60)
    assert seen == ["prepared"]
    assert [r.getMessage() for r in caplog.records] == ["cni warm-up: preparing netlink failed: netlink socket refused"]


@pytest.mark.parametrize("simulated", [False, True])
def test_prepare_cni_builds_a_kernel_port_and_leaves_a_simulated_one_to_the_first_call(
        tmp_path: Path, simulated: bool) -> None:
    if simulated:
        (tmp_path / SIM_MARKER).write_text("")
    built: list[str] = []

    def build() -> Any:
        built.append("built")
        return object()

    context = CniContext(sysfs=Sysfs(tmp_path), netlink=cast(Any, LazyNetlink(build)))
    prepare_cni(context)
    prepare_cni(context)
    assert built == ([] if simulated else ["built"])
