"""A second `sriovctl agent` on a node where one runs: it refuses to start with one clear line,
and the first agent's CNI socket, device-plugin socket and metrics port are untouched (same
files, still answering). A dead agent's leftover sockets are replaced. Two real agents."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.shim.client import AgentUnreachable
from tests.reliability.scenarios.second_agent import (
    SECOND_AGENT_CASES,
    agent_argv,
    agent_site,
    running_agent,
    second_agent_case,
    serves,
)
from tests.support.endpoints import free_port

pytestmark = pytest.mark.root


@pytest.fixture
def site() -> Iterator[Path]:
    with agent_site() as root:
        yield root


@pytest.mark.parametrize("second", SECOND_AGENT_CASES)
def test_second_agent_refuses_and_leaves_the_first_untouched(site: Path, second: str) -> None:
    assert second_agent_case(site, second) == []


def test_a_dead_agents_leftover_sockets_are_replaced(site: Path) -> None:
    port = free_port()
    cni, dp = site / "run" / "cni.sock", site / "dp" / "intel.com_two.sock"
    with running_agent(agent_argv(site, port=port), [cni, dp]) as first:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    assert cni.exists() and dp.exists()  # SIGKILL: nothing cleaned up
    with running_agent(agent_argv(site, port=port), [cni, dp]) as second:
        deadline = time.monotonic() + 30
        while True:
            try:
                if serves(cni, dp, port):
                    break
            except (OSError, AgentUnreachable):
                pass
            assert time.monotonic() < deadline and second.poll() is None, "the new agent did not take over"
            time.sleep(0.2)
