"""The fixtures every suite shares (registered by tests/conftest.py): pods' network namespaces,
veth pairs, veth-backed simulated hosts and CNI host nodes. Every name is random (several test
runs share this machine) and everything a fixture makes is removed afterwards, also when the
test fails; the rigs are leak-checked on the way out (tests/support/leaks.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns as pyroute2_netns

from sriovkit.sim import host as sim
from sriovkit.sim.net import SimNetwork, attach_veths
from tests.support.cni_host import Node, NodeFactory, cni_node, cni_node_teardown, veth_host_spec
from tests.support.device_plugins import DevicePluginNodeFactory, device_plugin_nodes
from tests.support.kernel import VethPair
from tests.support.kernel import veth_pair as make_veth_pair
from tests.support.leaks import assert_no_leaks, host_leaks
from tests.support.names import NETNS_DIR, NetnsFactory, unique_name


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
    left = host_leaks(None, netns=[f"{NETNS_DIR}/{name}" for name in made])
    assert left == [], f"left behind: {left}"


@pytest.fixture
def veth_pair() -> Iterator[VethPair]:
    """A veth pair in the host namespace (random names, down); deleted afterwards, wherever its
    end under test went."""
    with make_veth_pair() as pair:
        yield pair


@pytest.fixture
def veth(veth_pair: VethPair) -> str:
    """The end under test of `veth_pair`."""
    return veth_pair.name


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


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    """`node_factory(num_vfs=4, *, extra_pfs=None, **pf)`: a CNI host node (tests/support/cni_host.py)
    with a PF of random name; after the test every VF must be back as it was, with no state record,
    no lock, no IPAM allocation, and nothing of the node left on the host."""
    made: list[tuple[Node, dict[int, tuple[Any, ...]]]] = []
    counter = iter(range(100))

    def make(num_vfs: int = 4, *, extra_pfs: list[dict[str, Any]] | None = None, **pf: Any) -> Node:
        node = cni_node(tmp_path, unique_name("sc", 5), num_vfs, suffix=str(next(counter)),
                        devinfo_dir=tmp_path / "devinfo", log_dir=tmp_path, extra_pfs=extra_pfs, **pf)
        made.append((node, node.views()))
        return node

    yield make
    left: list[str] = []
    try:
        for node, before in made:
            assert_no_leaks(node, before)
    finally:
        for node, _ in made:
            left += cni_node_teardown(node)
    assert left == [], f"left behind: {left}"


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    return node_factory()


@pytest.fixture
def make_dp_node() -> Iterator[DevicePluginNodeFactory]:
    """The device-plugin rig (tests/support/device_plugins.py): `make_dp_node(pfs=None, resources=None,
    *, registry=False)`; every plugin manager and kubelet stopped and the directory removed after."""
    with device_plugin_nodes() as make:
        yield make
