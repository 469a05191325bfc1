"""Simulated hosts for provisioning: the `make_host` factory plus loaded drivers and MTUs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sriovkit.host.sysfs import Sysfs
from sriovkit.provision.apply import read_host_state
from sriovkit.provision.plan import HostState
from sriovkit.sim import host as sim
from sriovkit.sim.provision import SimulatedProvisioner


class Node:
    """A simulated node with the vfio-pci module 'loaded' (its driver directory exists)."""

    def __init__(self, root: Path, *pfs: dict[str, Any], vfio_loaded: bool = True) -> None:
        self.host = sim.create(root, {"pfs": list(pfs)})
        self.sysfs = Sysfs(root)
        self.proc = root / "proc"
        if vfio_loaded:
            (root / "sys/bus/pci/drivers/vfio-pci").mkdir(parents=True, exist_ok=True)
        self.provisioner = SimulatedProvisioner(self.host)

    def state(self) -> HostState:
        return read_host_state(self.sysfs, str(self.proc))

    def set_mtu(self, netdev: str, mtu: int) -> None:
        (self.host.root / "sys/class/net" / netdev / "mtu").write_text(f"{mtu}\n")

    def set_default_route(self, netdev: str) -> None:
        (self.proc / "net").mkdir(parents=True, exist_ok=True)
        (self.proc / "net" / "route").write_text(
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
            f"{netdev}\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")

    def drivers(self, pf_number: int = 0) -> list[str | None]:
        state = self.state().snapshot
        pf = state.get(self.host.pf_address(pf_number))
        assert pf is not None
        return [vf.driver for vf in state.virtual_functions(pf)]


@pytest.fixture
def node(tmp_path: Path):
    counter = iter(range(100))

    def build(*pfs: dict[str, Any], vfio_loaded: bool = True) -> Node:
        return Node(tmp_path / f"node{next(counter)}", *pfs, vfio_loaded=vfio_loaded)

    return build
