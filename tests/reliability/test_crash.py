"""Crash at every step: the plugin, the agent and DEL itself SIGKILLed after each step (through the
test-only fault points of sriovkit.cni.faults); what follows must give everything back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import scenarios

pytestmark = pytest.mark.root


def _check(outcome: scenarios.Outcome) -> None:
    print(outcome.line())  # what was tried, in the CI log
    assert outcome.tried > 0
    assert not outcome.failures and not outcome.leaks, outcome.explain()


def test_plugin_killed_after_each_add_step_then_del_or_add_again(tmp_path: Path) -> None:
    _check(scenarios.crash_add_at_every_step(tmp_path))


def test_del_killed_after_each_of_its_steps_then_retried(tmp_path: Path) -> None:
    _check(scenarios.crash_del_at_every_step(tmp_path))


def test_agent_killed_after_each_add_step(tmp_path: Path) -> None:
    _check(scenarios.crash_agent_at_every_step(tmp_path))


def test_state_writes_survive_a_kill_at_any_moment(tmp_path: Path) -> None:
    _check(scenarios.kill_while_saving(tmp_path, rounds=15))
