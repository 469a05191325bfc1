"""The kubelet-node rig: a simulated node (no interfaces) and the kubelet stand-in
(`sriovkit.kubesim`) in a short temporary directory (unix socket paths must stay under 108 bytes,
which pytest's tmp_path does not promise), for the device plugins, the agent and the DRA driver
to talk real gRPC to. The `make_dp_node` fixture (tests/support/fixtures.py) makes them."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sriovkit.deviceplugin.manager import DevicePluginManager, DevicePluginSettings
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from sriovkit.sim import host as sim
from tests.support.leaks import host_leaks, host_marks

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
class DevicePluginNode:
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


DevicePluginNodeFactory = Callable[..., DevicePluginNode]


@contextlib.contextmanager
def device_plugin_nodes() -> Iterator[DevicePluginNodeFactory]:
    """`make(pfs=None, resources=None, *, registry=False, pod_resources="pr/kubelet.sock", prefix="dp",
    watch_interval=0.05, **kubelet)`: a node in a short temporary directory named `prefix...`: the
    simulated host at host/, config.json (a list is written as its resourceList; None: the defaults
    above; a string as it is), the kubelet stand-in with its device-plugin dir at dp/, podresources
    at `pod_resources` (None: not served), the plugin watcher's registry at reg/ with `registry`,
    and `kubelet`'s other options; started. On exit every manager and kubelet is stopped and the
    directory removed; the one leak check then finds no process the test started still running and
nothing mounted under the directories."""
    made: list[DevicePluginNode] = []
    marks = host_marks()

    def build(pfs: list[dict[str, Any]] | None = None, resources: list[dict[str, Any]] | str | None = None,
              *, registry: bool = False, pod_resources: str | None = "pr/kubelet.sock", prefix: str = "dp",
              watch_interval: float = 0.05, **kubelet_options: Any) -> DevicePluginNode:
        root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        host = sim.create(root / "host", {"pfs": pfs if pfs is not None else DEFAULT_PFS})
        kubelet = Kubelet(root / "dp", pod_resources_socket=root / pod_resources if pod_resources else None,
                          plugins_registry_dir=root / "reg" if registry else None, watch_interval=watch_interval,
                          **kubelet_options)
        node = DevicePluginNode(root, host, root / "config.json", kubelet)
        node.write_config(resources if resources is not None else DEFAULT_RESOURCES)
        kubelet.start()
        made.append(node)
        return node

    left: list[str] = []
    try:
        yield build
    finally:
        for node in made:
            for manager in node.managers:
                manager.stop()
            node.kubelet.stop()
        left = host_leaks(marks, dirs=[node.root for node in made])
        for node in made:
            shutil.rmtree(node.root, ignore_errors=True)
    assert left == [], f"left behind: {left}"
