"""Soak: thousands of CNI calls through one real agent, a fresh netns per pod; its RSS must level
off (slope after the warm-up, not a size nor a time), its threads and descriptors stay put. The
agent used to keep every netlink ACK pyroute2 filed away on its long-lived host socket: about
9 KB a call, linear. SRIOVKIT_SOAK_CALLS makes the run longer (bench/soak.py prints it all)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.scenarios.soak import Sample, growth_verdict, memory_soak

pytestmark = pytest.mark.root
CALLS = int(os.environ.get("SRIOVKIT_SOAK_CALLS", "2000"))


def test_agent_memory_levels_off_over_thousands_of_calls(tmp_path: Path) -> None:
    window = max(CALLS // 10, 50)
    memory_soak(tmp_path, CALLS, window=window, warmup=5).check()


def test_the_growth_rule_catches_linear_growth_and_passes_a_plateau() -> None:
    def samples(rss: list[int]) -> list[Sample]:
        return [Sample(calls=n * 200, rss_kb=r, threads=4, fds=12) for n, r in enumerate(rss)]

    leaking = samples([38000 + 1800 * n for n in range(11)])  # 9 KB a call, for ever
    plateau = samples([38000, 52000, 54000, 55000, 55300, 55300, 56600, 56600, 56900, 57000, 57000])
    assert growth_verdict(leaking, 5) is not None
    assert growth_verdict(plateau, 5) is None
    more_threads = [*plateau[:6], *(Sample(s.calls, s.rss_kb, 4 + n, 12) for n, s in enumerate(plateau[6:]))]
    assert "threads" in (growth_verdict(more_threads, 5) or "")
