"""What the device plugins report to whoever counts (the agent's `AgentMetrics` serves it).

A Protocol, so the device plugins name no agent module: the agent depends on them, not the
other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class PoolMetrics(Protocol):
    # read at each scrape: resource -> registered with the kubelet (the manager sets it)
    registration: Callable[[], dict[str, bool]]

    def set_pool(self, resource: str, health: dict[str, bool]) -> None: ...

    def forget_pool(self, resource: str, devices: list[str]) -> None: ...

    def count_allocations(self, resource: str, count: int) -> None: ...

    def config_loaded(self, *, ok: bool, reload: bool = True) -> None: ...

    def count_config_warnings(self, source: str, count: int) -> None: ...
