"""A simulated node with veth-backed VFs, a CNI context on it, and a leak check after each test.

`node_factory(**pf)` builds one PF (random names) with VFs; `Node.run` calls the
plugin through `run_cni` the way a runtime would (env + stdin). After the test,
every VF must be back in the host namespace under its original name with its
original MAC, MTU and PF-side settings, with no state record, no held lock and
no IPAM allocation left in the host-local data dir.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sriovkit.cni.context import CniContext
from sriovkit.cni.plugin import run_cni
from sriovkit.commands.ports import netlink_for, provisioner_for
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.model import LinkInfo, VfSettings
from sriovkit.sim import host as sim
from sriovkit.sim.net import SimNetwork, attach_veths
from tests.integration.conftest import unique_name

CNI_BIN = "/usr/lib/cni"


@dataclass
class VfView:
    netdev: str | None
    link: LinkInfo | None
    settings: VfSettings | None


@dataclass
class Node:
    host: sim.SimulatedHost
    network: SimNetwork
    ctx: CniContext
    tmp: Path
    pf: str
    cni_path: str = CNI_BIN
    ipam_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ipam_dir = self.tmp / "ipam"

    @property
    def state_dir(self) -> Path:
        return Path(self.ctx.state_dir)

    @property
    def devinfo_dir(self) -> Path:
        """Where runtimeConfig.CNIDeviceInfoFile may point (Multus' /var/run/k8s.cni.cncf.io/devinfo)."""
        return Path(self.ctx.devinfo_dir)

    def vf(self, index: int) -> str:
        return self.host.vf_address(0, index)

    def vf_netdev(self, index: int) -> str:
        return self.host.vf_netdev_name(0, index)

    def host_local(self, subnet: str = "10.77.0.0/24", **extra: Any) -> dict[str, Any]:
        return {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(self.ipam_dir), **extra}

    def conf(self, index: int = 0, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        return {"cniVersion": version, "name": "sriov-net", "type": "sriov", "deviceID": self.vf(index), **extra}

    def env(self, command: str, netns: str = "", container: str = "c1", ifname: str = "net1",
            **extra: str) -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                "CNI_PATH": self.cni_path, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p", **extra}

    def run(self, command: str, conf: dict[str, Any], netns: str = "", **env: str) -> tuple[Any, int]:
        out, code = run_cni(self.env(command, netns, **env), json.dumps(conf).encode(), self.ctx)
        return (json.loads(out) if out.strip() else None), code

    def view(self, index: int) -> VfView:
        nl = self.ctx.netlink
        netdev = nl.device_netdev(self.vf(index))
        link = nl.find_link(netdev) if netdev else None
        try:
            settings = nl.vf_settings(self.pf, index)
        except Exception:
            settings = None
        return VfView(netdev, link, settings)

    def views(self) -> dict[int, tuple[Any, ...]]:
        out = {}
        for i in range(self.host.spec.pfs[0].num_vfs):
            v = self.view(i)
            link = (v.link.name, v.link.mac, v.link.mtu, v.link.up) if v.link else None
            out[i] = (v.netdev, link, v.settings)
        return out


def delete_netns_and_revive(node: Node, netns: str, pci_address: str) -> list[str]:
    """Delete the pod's netns, then (as a real VF would come back by itself) recreate the veth
    stand-in once the kernel has finished tearing the namespace down (asynchronous)."""
    subprocess.run(["ip", "netns", "delete", os.path.basename(netns)], check=True)
    for _ in range(400):
        revived = node.network.revive(pci_address)
        if revived:
            return revived
        time.sleep(0.025)
    raise AssertionError(f"the interface of {pci_address} never went away with {netns}")


def ip_json(*args: str, netns: str | None = None) -> Any:
    cmd = ["ip", "-j"] + (["-n", os.path.basename(netns)] if netns else []) + list(args)
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout or "[]")


def pod_link(netns: str, name: str) -> dict[str, Any] | None:
    links = [x for x in ip_json("addr", "show", netns=netns) if x["ifname"] == name]
    return links[0] if links else None


def pod_addresses(netns: str, name: str) -> set[str]:
    link = pod_link(netns, name)
    return {f"{a['local']}/{a['prefixlen']}" for a in (link or {}).get("addr_info", []) if a.get("scope") == "global"}


def ipam_allocations(ipam_dir: Path) -> list[str]:
    """host-local's reservations: one file per address (lock and last_reserved_ip.* are bookkeeping)."""
    if not ipam_dir.exists():
        return []
    return sorted(str(p.relative_to(ipam_dir)) for p in ipam_dir.rglob("*")
                  if p.is_file() and p.name != "lock" and not p.name.startswith("last_reserved_ip"))


def assert_no_leaks(node: Node, before: dict[int, tuple[Any, ...]]) -> None:
    records = [p.name for pattern in ("*.json", "*.pending", ".tmp-*") for p in node.state_dir.glob(pattern)]
    assert records == [], f"state records left: {records}"
    lock_dir = node.state_dir / "locks"
    for lock in lock_dir.glob("*.lock") if lock_dir.exists() else []:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if anyone still holds it
        finally:
            os.close(fd)
    assert ipam_allocations(node.ipam_dir) == [], "IPAM allocations left"
    assert node.views() == before, "a VF was not restored"


NodeFactory = Callable[..., Node]


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    made: list[tuple[Node, dict[int, tuple[Any, ...]]]] = []
    counter = iter(range(100))

    def make(num_vfs: int = 4, *, extra_pfs: list[dict[str, Any]] | None = None, **pf: Any) -> Node:
        n = next(counter)
        name = unique_name("sc", 5)
        spec = {"pfs": [{"name": name, "numVfs": num_vfs, "totalVfs": max(num_vfs, 8), **pf}, *(extra_pfs or [])]}
        host = sim.create(tmp_path / f"host{n}", spec)
        network = attach_veths(host)
        sysfs = Sysfs(host.root)
        ctx = CniContext(sysfs=sysfs, netlink=netlink_for(sysfs), drivers=provisioner_for(sysfs),
                         state_dir=str(tmp_path / f"state{n}"), lock_timeout_s=10,
                         devinfo_dir=str(tmp_path / "devinfo"), log_dir=str(tmp_path))
        node = Node(host, network, ctx, tmp_path / f"node{n}", name)
        node.tmp.mkdir()
        made.append((node, node.views()))
        return node

    yield make
    try:
        for node, before in made:
            assert_no_leaks(node, before)
    finally:
        for node, _ in made:
            node.network.destroy()
            node.ctx.netlink.close()


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    return node_factory()


def random_id() -> str:
    return secrets.token_hex(32)
