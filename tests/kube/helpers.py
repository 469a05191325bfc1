"""What the scenarios ask of the cluster: objects through kubectl (the API server's answers),
pods' processes and interfaces through containerd and the kernel, VFs through the simulated
host's switch (the same port the agent uses)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sriovkit.cni.netconf import parse_cni_args
from sriovkit.cni.state import StateStore
from sriovkit.commands.ports import netlink_for
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubeapi.podresources import PodResourcesClient
from sriovkit.netlink.model import VfSettings
from sriovkit.sim import host as sim
from tests.kube.cluster import NAMESPACE, PAUSE_IMAGE, RESOURCE, Cluster
from tests.support import waiting

NETWORKS = "k8s.v1.cni.cncf.io/networks"
STATUS = "k8s.v1.cni.cncf.io/network-status"
RESOURCE_NAME = "k8s.v1.cni.cncf.io/resourceName"
AGENT_LABEL = "app.kubernetes.io/component=agent"


class KubeError(AssertionError):
    pass


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, interval: float = 0.5) -> Any:
    """check()'s first truthy answer; fails naming `what` (and the last answer) after `timeout`. Any
    exception counts as not yet (e.g. the kubelet not answering yet): reported if it lasts."""
    return waiting.wait_for(what, check, timeout=timeout, interval=interval, ignoring=(Exception,), error=KubeError)


@dataclass
class Kube:
    cluster: Cluster
    namespace: str
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def for_test(cls, cluster: Cluster) -> Kube:
        k = cls(cluster, f"t-{secrets.token_hex(3)}")
        k.run("create", "namespace", k.namespace)
        return k

    def cleanup(self) -> None:
        for undo in reversed(self.cleanups):
            undo()
        # its pods first, waiting until they are gone (the API server drops each once the kubelet
        # has stopped it; grace 0), then the namespace without waiting: the namespace controller
        # takes its seconds per namespace to remove the rest (NADs, events), nothing a later test sees
        self.run("delete", "pods", "--all", "-n", self.namespace, "--wait=true", "--timeout=180s", check=False,
                 timeout=200)
        self.run("delete", "namespace", self.namespace, "--wait=false", check=False)
        # a pod leaves the API server before the runtime has torn its sandbox down: the next test
        # starts once our CNI holds nothing of this namespace's pods (every DEL done)
        wait_for(f"the CNI's attachments of {self.namespace}'s pods released", lambda: not self.attached(),
                 timeout=150, interval=0.5)

    def attached(self) -> list[str]:
        """The keys of the CNI's attachment records (done or in progress) of this namespace's pods."""
        store = StateStore(str(self.cluster.node_path("/var/lib/cni/sriov")))
        return [r.key for r in store.records(pending=True)
                if parse_cni_args(r.cni_args).get("K8S_POD_NAMESPACE") == self.namespace]

    # -- the API server ----------------------------------------------------------------------
    def run(self, *args: str, check: bool = True, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = self.cluster.kubectl(*args, stdin=stdin, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def apply(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        obj.setdefault("metadata", {}).setdefault("namespace", namespace or self.namespace)
        return dict(json.loads(self.run("apply", "-o", "json", "-f", "-", stdin=json.dumps(obj)).stdout))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return dict(json.loads(self.run("get", kind, name, "-n", namespace or self.namespace, "-o", "json").stdout))

    def list(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-n", namespace or self.namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return list(json.loads(self.run(*args).stdout)["items"])

    def delete(self, kind: str, name: str, *, wait: bool = True, namespace: str | None = None) -> None:
        self.run("delete", kind, name, "-n", namespace or self.namespace, f"--wait={str(wait).lower()}",
                 "--ignore-not-found", "--timeout=120s", timeout=150)

    def nad(self, name: str, config: dict[str, Any], resource: str | None = RESOURCE) -> dict[str, Any]:
        annotations = {RESOURCE_NAME: resource} if resource else {}
        return self.apply({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                           "metadata": {"name": name, "annotations": annotations},
                           "spec": {"config": json.dumps({"name": name, **config})}})

    def pod(self, name: str, *, networks: str | None = None, vfs: int = 0,
            resource: str = RESOURCE) -> dict[str, Any]:
        annotations = {NETWORKS: networks} if networks else {}
        resources = {"requests": {resource: str(vfs)}, "limits": {resource: str(vfs)}} if vfs else {}
        return self.apply({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "annotations": annotations},
                           "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                               "name": "main", "image": PAUSE_IMAGE, "imagePullPolicy": "Never",
                               "resources": resources}]}})

    def wait_running(self, name: str, timeout: float = 120) -> dict[str, Any]:
        def running() -> dict[str, Any] | None:
            pod = self.get("pod", name)
            return pod if pod["status"].get("phase") == "Running" and all(
                c.get("ready") for c in pod["status"].get("containerStatuses", [])) else None
        try:
            return dict(wait_for(f"pod {name} Running", running, timeout))
        except KubeError as exc:
            raise KubeError(f"{exc}; events: {self.events(name)}") from None

    def events(self, pod: str) -> list[str]:
        items = self.list("events")
        return [f"{e.get('reason')}: {e.get('message')}" for e in items
                if e.get("involvedObject", {}).get("name") == pod]

    def annotation(self, pod: str, key: str) -> Any:
        value = self.get("pod", pod)["metadata"].get("annotations", {}).get(key)
        return json.loads(value) if value else None

    # -- the node ----------------------------------------------------------------------------
    def allocatable(self) -> dict[str, str]:
        return self.cluster.allocatable()

    def pod_devices(self, pod: str, resource: str = RESOURCE) -> list[str]:
        """What the kubelet allocated to the pod, from its podresources API."""
        return PodResourcesClient(str(self.cluster.pod_resources_socket)).devices(self.namespace, pod, resource)

    def container_pid(self, pod: str) -> int:
        """The PID of the pod's container, as containerd reports it."""
        status = self.get("pod", pod)["status"]["containerStatuses"][0]
        container = status["containerID"].split("://", 1)[1]
        for line in self.cluster.ctr("tasks", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container:
                return int(fields[1])
        raise KubeError(f"pod {pod}: no task for container {container}")

    def pod_links(self, pod: str) -> dict[str, dict[str, Any]]:
        """The pod's interfaces by name, as the kernel reports them inside its network namespace."""
        pid = self.container_pid(pod)
        out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "-d", "addr", "show"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return {link["ifname"]: link for link in json.loads(out)}

    def pod_env(self, pod: str) -> dict[str, str]:
        raw = Path(f"/proc/{self.container_pid(pod)}/environ").read_bytes().decode()
        return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)

    def agent_pod(self) -> dict[str, Any]:
        pods = [p for p in self.list("pods", NAMESPACE, AGENT_LABEL) if not p["metadata"].get("deletionTimestamp")]
        if len(pods) != 1:
            raise KubeError(f"expected one agent pod, found {[p['metadata']['name'] for p in pods]}")
        return pods[0]


def simulated_host(cluster: Cluster, root: Path | None = None) -> sim.SimulatedHost:
    """The node's simulated host (or another one at `root`)."""
    return sim.open_existing(root or cluster.sim_root)


def vf_of(cluster: Cluster, pci_address: str, root: Path | None = None) -> tuple[str, int]:
    """(PF name, VF index) of a simulated VF, from the host's tree."""
    host = simulated_host(cluster, root)
    for device in host.devices():
        if device.pci_address == pci_address and device.pf_address is not None and device.vf_index is not None:
            pf = next(d.netdev for d in host.devices() if d.pci_address == device.pf_address)
            assert pf is not None
            return pf, device.vf_index
    raise KubeError(f"{pci_address}: not a VF of the simulated host")


def vf_settings(cluster: Cluster, pci_address: str, root: Path | None = None) -> VfSettings:
    """The VF's settings as its PF reports them (the simulated NIC's switch)."""
    pf, index = vf_of(cluster, pci_address, root)
    return netlink_for(Sysfs(root or cluster.sim_root)).vf_settings(pf, index)


def vf_settings_all(cluster: Cluster) -> dict[str, VfSettings]:
    host = simulated_host(cluster)
    return {d.pci_address: vf_settings(cluster, d.pci_address) for d in host.devices() if d.vf_index is not None}


def env_key(resource: str) -> str:
    """The env var the device plugin API names after a resource (as upstream's plugin does)."""
    return "PCIDEVICE_" + re.sub(r"[^A-Za-z0-9_]", "_", resource).upper()
