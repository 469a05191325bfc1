"""A simulated node, a kubelet stand-in (`sriovkit.kubesim`) and the device plugins,
talking gRPC over real unix sockets in a short temporary directory (socket paths
must stay under 108 bytes, which pytest's tmp_path does not promise)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from sriovkit.deviceplugin.manager import DevicePluginManager, DevicePluginSettings
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from sriovkit.sim import host as sim

DEFAULT_PFS: list[dict[str, Any]] = [
    {"name": "enp1s0f0", "numVfs": 4, "vfDrivers": {"2": "vfio-pci", "3": "igb_uio"}},
    {"name": "enp1s0f1", "vendor": "15b3", "device": "1017", "vfDevice": "1018", "driver": "mlx5_core",
     "vfDriver": "mlx5_core", "numaNode": 1, "numVfs": 2, "rdma": True},
]
DEFAULT_RESOURCES: list[dict[str, Any]] = [
    {"resourceName": "net", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]}},
    {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}},
    {"resourceName": "uio", "selectors": {"drivers": ["igb_uio"]}},
    {"resourceName": "rdma", "resourcePrefix": "nvidia.com", "selectors": {"vendors": ["15b3"], "isRdma": True}},
]


@dataclass
class Node:
    root: Path
    host: sim.SimulatedHost
    config: Path
    kubelet: Kubelet
    managers: list[DevicePluginManager] = field(default_factory=list)

    @property
    def sysfs(self) -> Sysfs:
        return Sysfs(self.host.root)

    @property
    def dp_dir(self) -> Path:
        return self.root / "dp"

    @property
    def devinfo_dir(self) -> Path:
        return self.root / "devinfo"

    def write_config(self, resources: list[dict[str, Any]] | str) -> None:
        text = resources if isinstance(resources, str) else json.dumps({"resourceList": resources})
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config)

    def settings(self, **overrides: Any) -> DevicePluginSettings:
        base = DevicePluginSettings(
            config_file=self.config, sysfs=self.sysfs, proc_root=str(self.root / "proc"),
            device_plugin_dir=self.dp_dir, devinfo_dir=self.devinfo_dir, cdi_dir=self.root / "cdi",
            poll_interval=0.05)
        return replace(base, **overrides)

    def start_plugins(self, **overrides: Any) -> DevicePluginManager:
        manager = DevicePluginManager(self.settings(**overrides))
        manager.start()
        self.managers.append(manager)
        return manager


@pytest.fixture
def make_node() -> Iterator[Any]:
    made: list[Node] = []

    def build(pfs: list[dict[str, Any]] | None = None, resources: list[dict[str, Any]] | None = None,
              *, registry: bool = False) -> Node:
        root = Path(tempfile.mkdtemp(prefix="dp", dir="/tmp"))
        host = sim.create(root / "host", {"pfs": pfs if pfs is not None else DEFAULT_PFS})
        kubelet = Kubelet(root / "dp", pod_resources_socket=root / "pr" / "kubelet.sock",
                          plugins_registry_dir=root / "reg" if registry else None, watch_interval=0.05)
        node = Node(root, host, root / "config.json", kubelet)
        node.write_config(resources if resources is not None else DEFAULT_RESOURCES)
        kubelet.start()
        made.append(node)
        return node

    yield build
    for node in made:
        for manager in node.managers:
            manager.stop()
        node.kubelet.stop()
        shutil.rmtree(node.root, ignore_errors=True)


@pytest.fixture
def node(make_node: Any) -> Node:
    return make_node()
