"""Races: many ADD/DEL loops on few VFs through the agent and standalone at once; two ADDs for one
VF; a late DEL of an old pod. SRIOVKIT_RACE_CYCLES sets the loops' length (CI: 10; the full
32 x 100 run is `bench/reliability_report.py --full`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability import scenarios

pytestmark = pytest.mark.root
CYCLES = int(os.environ.get("SRIOVKIT_RACE_CYCLES", "10"))



def test_32_loops_over_8_vfs_through_agent_and_standalone(tmp_path: Path) -> None:
    scenarios.races(tmp_path, workers=32, cycles=CYCLES, vfs=8).check()


def test_two_adds_for_one_vf_at_once(tmp_path: Path) -> None:
    scenarios.same_vf_at_once(tmp_path, rounds=4).check()


def test_a_late_del_of_an_old_pod_never_touches_the_new_pods_vf(tmp_path: Path) -> None:
    scenarios.late_del_of_an_old_pod(tmp_path, rounds=6).check()
