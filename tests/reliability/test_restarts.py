"""Restarts: the agent (killed or stopped) and the kubelet simulator restarted while pods hold VFs.
Registration latency is printed, not asserted (bench/reliability_report.py holds it to 1 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import scenarios

pytestmark = pytest.mark.root



def test_agent_restarted_while_pods_hold_vfs(tmp_path: Path) -> None:
    scenarios.agent_restart_with_pods(tmp_path, rounds=2).check()


def test_kubelet_restarted(tmp_path: Path) -> None:
    scenarios.kubelet_restart(tmp_path, rounds=2).check()
