"""Fixtures for pure tests: simulated hosts in temporary directories (no root)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sriovkit.host.discover import discover
from sriovkit.host.model import HostSnapshot
from sriovkit.host.sysfs import Sysfs
from sriovkit.sim import host as sim

HostFactory = Callable[..., tuple[sim.SimulatedHost, HostSnapshot]]


@pytest.fixture
def make_host(tmp_path: Path) -> HostFactory:
    """Build a simulated host from PF dicts and return it with its discovery snapshot."""
    counter = iter(range(1000))

    def build(*pfs: dict[str, Any], vhost_net: bool = True) -> tuple[sim.SimulatedHost, HostSnapshot]:
        root = tmp_path / f"host{next(counter)}"
        host = sim.create(root, {"pfs": list(pfs), "vhostNet": vhost_net})
        return host, discover(Sysfs(root))

    return build
