"""The agent's CNI socket under hostile clients (slow senders, idle connections, frames no CNI
call can carry): a real agent on a veth-backed simulated node still serves a normal ADD and DEL
while they hold on, and its peak RSS stays bounded. Memory is asserted, never timings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.scenarios import stall

pytestmark = pytest.mark.root

ATTACKS: dict[str, stall.Attack] = {
    "slow-loris-header": lambda p, s: stall.slow_senders(p, s, gap_s=5.0),
    "slow-body": lambda p, s: stall.slow_senders(p, s, gap_s=1.0, pattern="body"),
    "slow-stdin": lambda p, s: stall.slow_senders(p, s, gap_s=1.0, pattern="stdin"),
    "idle-2000": lambda p, s: stall.idle_connections(p, s, 2000),
    "env-16MiB-tiny-vars": lambda p, s: stall.huge_frames(p, s, shape="tiny-vars"),
    "env-many-vars": lambda p, s: stall.huge_frames(p, s, shape="many-vars"),
    "stdin-at-limit": lambda p, s: stall.huge_frames(p, s, shape="max-stdin"),
    "stdin-over-limit": lambda p, s: stall.huge_frames(p, s, shape="over-stdin"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_normal_add_and_del_while_hostile_clients_hold_the_socket(tmp_path: Path, name: str) -> None:
    stall.normal_calls_under(tmp_path, name, ATTACKS[name]).check()
