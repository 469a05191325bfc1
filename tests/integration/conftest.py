"""Fixtures for root tests on real namespaces and veth-backed simulated hosts.

Every name is random (several test runs share this machine) and everything a
fixture makes is removed afterwards, also when the test fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns as pyroute2_netns

from sriovkit.sim import host as sim
from sriovkit.sim.net import SimNetwork, attach_veths
from tests.integration.helpers import NETNS_DIR, NetnsFactory, unique_name, veth_host_spec


@pytest.fixture
def netns() -> Iterator[NetnsFactory]:
    """A factory of new network namespaces; each call returns its path (/var/run/netns/NAME)."""
    made: list[str] = []

    def create() -> str:
        name = unique_name("sktest-", 10)
        pyroute2_netns.create(name)
        made.append(name)
        return f"{NETNS_DIR}/{name}"

    yield create
    for name in made:
        with contextlib.suppress(OSError, FileNotFoundError):
            pyroute2_netns.remove(name)


@pytest.fixture
def veth_host(tmp_path: Path) -> Iterator[tuple[sim.SimulatedHost, SimNetwork]]:
    """A simulated host (one PF, 4 VFs, random names) with real bridge and veths, removed on exit."""
    host = sim.create(tmp_path / "host", veth_host_spec(unique_name("sk", 5)))
    with attach_veths(host) as network:
        yield host, network


@pytest.fixture
def make_veth_host(tmp_path: Path) -> Iterator[Callable[..., tuple[sim.SimulatedHost, SimNetwork]]]:
    """Like `veth_host` for a spec of your own: `make_veth_host(spec_dict)`; names must be unique."""
    networks: list[SimNetwork] = []
    counter = iter(range(1000))

    def make(spec: dict[str, Any]) -> tuple[sim.SimulatedHost, SimNetwork]:
        host = sim.create(tmp_path / f"host{next(counter)}", spec)
        network = attach_veths(host)
        networks.append(network)
        return host, network

    yield make
    for network in networks:
        network.destroy()
