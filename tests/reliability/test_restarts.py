"""Restarts: the agent (killed or stopped) and the kubelet simulator restarted while pods hold VFs.
Registration latency is printed, not asserted (bench/reliability_report.py holds it to 1 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import scenarios

pytestmark = pytest.mark.root


def _check(outcome: scenarios.Outcome) -> None:
    print(outcome.line())
    assert outcome.tried > 0
    assert not outcome.failures and not outcome.leaks, outcome.explain()


def test_agent_restarted_while_pods_hold_vfs(tmp_path: Path) -> None:
    _check(scenarios.agent_restart_with_pods(tmp_path, rounds=2))


def test_kubelet_restarted(tmp_path: Path) -> None:
    _check(scenarios.kubelet_restart(tmp_path, rounds=2))
