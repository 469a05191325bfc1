"""The CNI host rig: a simulated node whose VFs are real veths (each PF a bridge), and a CNI
context on it. `Node.run` calls the plugin through `run_cni` the way a runtime would (env +
stdin); `Node.views` is what the leak check compares. `cni_node` builds one, `cni_node_teardown`
checks and removes it; the `node_factory`/`node` fixtures and the reliability scenarios'
`sim_node` are both made of them."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sriovkit.cni.context import CniContext
from sriovkit.cni.plugin import run_cni
from sriovkit.commands.ports import netlink_for, provisioner_for
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.model import LinkInfo, VfSettings
from sriovkit.sim import host as sim
from sriovkit.sim.net import SimNetwork, attach_veths
from tests.support.leaks import HostMarks, host_leaks, host_marks

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
    marks: HostMarks = field(default_factory=host_marks)  # what the host had when the node was made

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


NodeFactory = Callable[..., Node]


def veth_host_spec(prefix: str, num_vfs: int = 4, **pf: Any) -> dict[str, Any]:
    """A spec with one PF named `prefix` (<= 8 chars keeps VF names "<pf>v<index>" within 15)."""
    return {"pfs": [{"name": prefix, "numVfs": num_vfs, "totalVfs": max(num_vfs, 8), **pf}]}


def cni_node(tmp: Path, name: str, num_vfs: int = 4, *, suffix: str = "", lock_timeout_s: float = 10,
             devinfo_dir: Path | None = None, log_dir: Path | None = None,
             extra_pfs: list[dict[str, Any]] | None = None, **pf: Any) -> Node:
    """A node in `tmp` (host<suffix>/, state<suffix>/, node<suffix>/): PF `name` (<= 8 characters)
    with `num_vfs` VFs and PF settings `pf`, then `extra_pfs`; device-info and log files go to
    `devinfo_dir` and `log_dir` (default `tmp`)."""
    spec = {"pfs": [{"name": name, "numVfs": num_vfs, "totalVfs": max(num_vfs, 8), **pf}, *(extra_pfs or [])]}
    marks = host_marks()
    host = sim.create(tmp / f"host{suffix}", spec)
    network = attach_veths(host)
    sysfs = Sysfs(host.root)
    ctx = CniContext(sysfs=sysfs, netlink=netlink_for(sysfs), drivers=provisioner_for(sysfs),
                     state_dir=str(tmp / f"state{suffix}"), lock_timeout_s=lock_timeout_s,
                     devinfo_dir=str(devinfo_dir or tmp), log_dir=str(log_dir or tmp))
    node = Node(host, network, ctx, tmp / f"node{suffix}", name, marks=marks)
    node.tmp.mkdir(exist_ok=True)
    return node


def cni_node_teardown(node: Node) -> list[str]:
    """Remove the node's interfaces, then what is still on the host of it (see `host_leaks`)."""
    try:
        node.network.destroy()
    finally:
        node.ctx.netlink.close()
    return host_leaks(node.marks, interfaces=[p.peer for p in node.network.ports], prefixes=[node.pf],
                      dirs=[node.host.root, node.tmp, node.state_dir])


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
