"""Fixtures for root tests on real namespaces and veth-backed simulated hosts.

Every name is random (several test runs share this machine) and everything a
fixture makes is removed afterwards, also when the test fails.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns as pyroute2_netns

from sriovkit.host import sim
from sriovkit.host.simnet import SimNetwork, attach_veths

NETNS_DIR = "/var/run/netns"
NetnsFactory = Callable[[], str]


def unique_name(prefix: str, length: int = 6) -> str:
    """`prefix` plus random hex; keep the total within 15 characters for interfaces."""
    return f"{prefix}{secrets.token_hex(8)[:length]}"


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


def veth_host_spec(prefix: str, num_vfs: int = 4, **pf: Any) -> dict[str, Any]:
    """One PF named `prefix` (<= 8 chars keeps VF names "<pf>v<index>" within 15)."""
    return {"pfs": [{"name": prefix, "numVfs": num_vfs, "totalVfs": max(num_vfs, 8), **pf}]}


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
