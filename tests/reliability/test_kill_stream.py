"""Issue 13 classes 1, 2, 3 and 9 as reliability scenarios (also rows of bench/reliability_report.py):
a pod with NET_ADMIN against DEL, hostile caller paths, malformed GC lists, and ADD/DEL streams
with the agent SIGKILLed at random moments."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import scenarios

pytestmark = pytest.mark.root


def test_kill_stream_every_successful_del_gave_the_vf_back(tmp_path: Path) -> None:
    scenarios.kill_stream(tmp_path, vfs=4, cycles=5).check()


def test_a_hostile_pod_never_gets_its_links_into_the_host_and_always_loses_the_vf(tmp_path: Path) -> None:
    scenarios.pod_renames(tmp_path).check()


def test_hostile_caller_paths_change_nothing(tmp_path: Path) -> None:
    scenarios.caller_paths(tmp_path).check()


def test_malformed_gc_lists_release_nothing(tmp_path: Path) -> None:
    scenarios.gc_lists(tmp_path).check()
