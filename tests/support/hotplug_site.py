"""The hot-plug site rig: our own containerd (pods created over CRI get real sandboxes and
network namespaces), the fake Kubernetes API, a CNI bin dir with the plain plugins and our
`sriov` plugin, and directories standing for the kubelet's and OVS's. The `containerd` and
`site` fixtures (tests/integration/hotplug/conftest.py) make and remove it."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sriovkit.hotplug.cniexec import CniRuntime
from sriovkit.hotplug.controller import HotplugController, HotplugSettings
from sriovkit.hotplug.cri import CriClient
from sriovkit.hotplug.kube import KubernetesApi
from sriovkit.hotplug.plan import Backoff
from sriovkit.hotplug.vhostuser import VhostUserDirs
from sriovkit.kubeapi.podresources import PodResourcesClient
from sriovkit.kubesim.apiserver import NADS, PODS, FakeKubeApi
from tests.cnirt.runtime import Containerd
from tests.support.names import unique_name

NODE = "node-a"
STATUS = "k8s.v1.cni.cncf.io/network-status"
NETWORKS = "k8s.v1.cni.cncf.io/networks"


@dataclass
class Site:
    tmp: Path
    short: Path  # a short root for the kubelet's and OVS's dirs: unix socket paths are <= 107 bytes
    kube: FakeKubeApi
    runtime: Containerd
    cni_bin: Path
    env: dict[str, str] = field(default_factory=dict)  # extra CNI env (the sriov plugin's host root)
    pod_resources_socket: Path | None = None
    sandboxes: dict[str, str] = field(default_factory=dict)  # pod uid -> sandbox id
    bridges: list[str] = field(default_factory=list)
    controllers: list[HotplugController] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "hotplug-state"

    @property
    def dirs(self) -> VhostUserDirs:
        return VhostUserDirs(self.short / "kubelet", self.short / "ovs")

    @property
    def ipam_dir(self) -> Path:
        return self.tmp / "ipam"

    def controller(self, **settings: Any) -> HotplugController:
        kubeconfig = self.kube.write_kubeconfig(self.tmp / "kubeconfig")
        options: dict[str, Any] = {
            "node_name": NODE, "state_dir": self.state_dir,
            "cni": CniRuntime((str(self.cni_bin),), timeout_s=60, extra_env=self.env),
            "vhostuser": self.dirs, "backoff": Backoff(initial=0.2, factor=2, maximum=1.0), "resync_s": 2.0,
            "watch_timeout_s": 30, **settings}
        pod_resources = PodResourcesClient(str(self.pod_resources_socket)) if self.pod_resources_socket else None
        controller = HotplugController(HotplugSettings(**options), api=KubernetesApi(NODE, kubeconfig=str(kubeconfig)),
                                       cri=CriClient(str(self.runtime.socket)), pod_resources=pod_resources)
        controller.start()
        self.controllers.append(controller)
        return controller

    def bridge_nad(self, name: str, subnet: str, namespace: str = "ns1", **extra: Any) -> dict[str, Any]:
        bridge = unique_name("skhp", 8)
        self.bridges.append(bridge)
        config = {"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": bridge,
                  "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(self.ipam_dir)},
                  **extra}
        return self.nad(name, config, namespace=namespace)

    def nad(self, name: str, config: dict[str, Any], *, namespace: str = "ns1",
            resource: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"namespace": namespace, "name": name}
        if resource:
            meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": resource}
        return self.kube.put(NADS, {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                                    "metadata": meta, "spec": {"config": json.dumps(config)}})

    def pod(self, name: str, networks: str = "", *, namespace: str = "ns1", vhostuser: bool = False,
            sandbox: bool = True) -> dict[str, Any]:
        """A running pod on this node: its sandbox over CRI first (as the kubelet), then the API object."""
        uid = f"{unique_name('uid-', 12)}-{name}"
        if sandbox:
            self.sandboxes[uid] = self.runtime.run_pod(name, namespace, uid)
        volumes = [{"name": "vhostuser-sockets", "emptyDir": {}}] if vhostuser else []
        if vhostuser:
            self.dirs.source(uid).mkdir(parents=True)
        return self.kube.put(PODS, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": namespace, "name": name, "uid": uid, "annotations": {NETWORKS: networks}},
            "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}], "volumes": volumes},
            "status": {"phase": "Running"}})

    def set_networks(self, pod: dict[str, Any], networks: str) -> None:
        current = self.kube.get(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        current["metadata"]["annotations"][NETWORKS] = networks
        self.kube.put(PODS, current)

    def netns(self, pod: dict[str, Any]) -> str:
        sandbox = CriClient(str(self.runtime.socket)).sandbox(pod["metadata"]["uid"], pod["metadata"]["namespace"],
                                                             pod["metadata"]["name"])
        assert sandbox is not None
        return sandbox.netns

    def status(self, pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """interface -> network-status entry, as the API has it now."""
        current = self.kube.get(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        entries = json.loads(current["metadata"].get("annotations", {}).get(STATUS) or "[]")
        return {e["interface"]: e for e in entries}

    def wait_status(self, pod: dict[str, Any], interfaces: set[str], timeout: float = 30.0) -> dict[str, Any]:
        """network-status once it lists exactly `interfaces` (secondary and default alike)."""
        end = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < end:
            status = self.status(pod)
            if set(status) == interfaces:
                return status
            time.sleep(0.05)
        raise AssertionError(f"network-status interfaces {sorted(status)}, expected {sorted(interfaces)}; "
                             f"events: {[e['message'] for e in self.kube.events]}")

    def events(self, reason: str, pod: dict[str, Any] | None = None) -> list[str]:
        return [e["message"] for e in list(self.kube.events) if e["reason"] == reason
                and (pod is None or e["involvedObject"]["uid"] == pod["metadata"]["uid"])]

    def remove_sandbox(self, pod: dict[str, Any]) -> None:
        self.runtime.remove_pod(self.sandboxes.pop(pod["metadata"]["uid"]))


def cni_bin_dir(tmp: Path) -> Path:
    bin_dir = tmp / "cni-bin"
    bin_dir.mkdir()
    for plugin in Path("/usr/lib/cni").iterdir():
        (bin_dir / plugin.name).symlink_to(plugin)
    (bin_dir / "sriov").symlink_to(Path(sys.executable).with_name("sriov"))
    return bin_dir
