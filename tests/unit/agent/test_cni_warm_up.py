"""The agent loads every CNI command's code once it starts (agent.cni_service.CniWarmUp), so the
first pod after a start does not wait for the import; a standalone plugin process still imports
only the command it runs."""

from __future__ import annotations

import json
import subprocess
import sys

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
