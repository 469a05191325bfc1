"""The DRA node rig: a simulated node with the device-plugin manager and the DRA driver in this process, the
kubelet stand-in (`sriovkit.kubesim`) registering it through its plugin watcher and calling it
over real gRPC on unix sockets, and the in-process fake API server holding ResourceClaims and
the ResourceSlices the driver publishes through the real `kubernetes` client. The `dra_node`
fixture (tests/integration/dra/conftest.py) makes it on the kubelet-node rig."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sriovkit.commands.ports import provisioner_for
from sriovkit.deviceplugin.manager import DevicePluginManager, DevicePluginSettings
from sriovkit.dra.driver import DraDriver, DraSettings
from sriovkit.dra.kube import KubernetesDraApi
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from sriovkit.kubesim.apiserver import CLAIMS, SLICES, FakeKubeApi
from sriovkit.sim import host as sim

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
NODE_NAME = "node-a"
PFS: list[dict[str, Any]] = [
    {"name": "enp1s0f0", "numVfs": 4, "vfDrivers": {"3": "vfio-pci"}},  # vfio-pci loaded: a VF uses it
    {"name": "enp1s0f1", "vendor": "15b3", "device": "1017", "vfDevice": "1018", "driver": "mlx5_core",
     "vfDriver": "mlx5_core", "numaNode": 1, "numVfs": 2, "rdma": True},
]
RESOURCES: list[dict[str, Any]] = [
    {"resourceName": "net", "selectors": {"pfNames": ["enp1s0f0#0-1"]}},
    {"resourceName": "held", "servedBy": "none", "selectors": {"pfNames": ["enp1s0f0#3"]}},
    {"resourceName": "vfs", "servedBy": "dra"},  # everything the others left: VF 2 of PF0, PF1's VFs
]
PF0_VF2 = "0000:11:00.2"
MLX_VF0 = "0000:13:00.0"


@dataclass
class DraNode:
    root: Path
    host: sim.SimulatedHost
    kubelet: Kubelet
    api: FakeKubeApi
    kubeconfig: Path
    running: list[tuple[DevicePluginManager, DraDriver]] = field(default_factory=list)

    @property
    def sysfs(self) -> Sysfs:
        return Sysfs(self.host.root)

    @property
    def cdi_dir(self) -> Path:
        return self.root / "cdi"

    @property
    def devinfo_dir(self) -> Path:
        return self.root / "devinfo"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def agent_cmd(self, *extra: str) -> list[str]:
        """`sriovctl agent` as a process on this node (add --dra and its flags in `extra`)."""
        return [sys.executable, "-m", "sriovkit", "agent", "--config-file", str(self.root / "config.json"),
                "--host-root", str(self.host.root), "--device-plugin-dir", str(self.root / "dp"),
                "--devinfo-dir", str(self.devinfo_dir), "--cni-socket", "", "--metrics-address", "",
                "--cdi-dir", str(self.cdi_dir), "--plugins-registry-dir", str(self.root / "reg"),
                "--dra-plugins-dir", str(self.root / "plugins"), "--dra-state-dir", str(self.state_dir), *extra]

    def dra_agent_cmd(self) -> list[str]:
        return self.agent_cmd("--dra", "--node-name", NODE_NAME, "--kubeconfig", str(self.kubeconfig))

    def write_config(self, resources: list[dict[str, Any]]) -> None:
        (self.root / "config.json").write_text(json.dumps({"resourceList": resources}))

    def start_agent(self) -> DraDriver:
        """The agent's device plugin + DRA driver, as `sriovctl agent --dra` wires them."""
        manager = DevicePluginManager(DevicePluginSettings(
            config_file=self.root / "config.json", sysfs=self.sysfs, proc_root=str(self.root / "proc"),
            device_plugin_dir=self.root / "dp", devinfo_dir=self.devinfo_dir, cdi_dir=self.cdi_dir,
            poll_interval=0.05))
        manager.start()
        driver = DraDriver(DraSettings(node_name=NODE_NAME, driver_name=DRIVER,
                                       plugins_registry_dir=self.root / "reg", plugins_dir=self.root / "plugins",
                                       state_dir=self.state_dir, cdi_dir=self.cdi_dir,
                                       devinfo_dir=self.devinfo_dir, socket_check_s=0.1),
                           manager, KubernetesDraApi(kubeconfig=str(self.kubeconfig)),
                           drivers=provisioner_for(self.sysfs))
        try:
            driver.start()
        except BaseException:
            manager.stop()
            raise
        self.running.append((manager, driver))
        return driver

    def stop_agent(self) -> None:
        manager, driver = self.running.pop()
        driver.stop()
        manager.stop()

    def slices(self) -> list[dict[str, Any]]:
        with self.api.cond:
            return [json.loads(json.dumps(o)) for (k, _, _), o in sorted(self.api.objects.items()) if k == SLICES]

    def published(self) -> dict[str, list[str]]:
        """pool -> device names, as the API server has them."""
        return {s["spec"]["pool"]["name"]: [d["name"] for d in s["spec"]["devices"]] for s in self.slices()}

    def wait_published(self, expected: dict[str, list[str]], timeout: float = 10.0) -> None:
        self.api.wait_for(lambda _: self.published() == expected, timeout)

    def claim(self, devices: list[tuple[str, str]], configs: Sequence[dict[str, Any]] = (), *,
              name: str | None = None, namespace: str = "default") -> tuple[str, str, str]:
        """An allocated claim (what the scheduler leaves) for (request, device name) pairs."""
        uid = str(uuid.uuid4())
        name = name or f"claim-{uid[:8]}"
        results = [{"request": request, "driver": DRIVER, "pool": pool_of(device), "device": device}
                   for request, device in devices]
        self.api.put(CLAIMS, {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"namespace": namespace, "name": name, "uid": uid},
            "spec": {"devices": {"requests": [{"name": r, "exactly": {"deviceClassName": "sriov-vf"}}
                                              for r, _ in devices]}},
            "status": {"allocation": {"devices": {"results": results, "config": list(configs)}},
                       "reservedFor": [{"resource": "pods", "name": "pod-x", "uid": f"pod-{uid[:8]}"}]}})
        return namespace, uid, name


def pool_of(device: str) -> str:
    pf = "0000-10-00-0" if device.startswith("0000-11-") else "0000-12-00-0"
    return f"{NODE_NAME}/{pf}"


def vf_config(requests: list[str] | None = None, source: str = "FromClaim", **fields: Any) -> dict[str, Any]:
    return {"source": source, "requests": requests or [],
            "opaque": {"driver": DRIVER, "parameters": {"apiVersion": f"{DRIVER}/v1alpha1", "kind": "VfConfig",
                                                        **fields}}}
