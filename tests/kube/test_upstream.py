"""Issue 16 part 2 on the real node: upstream's two DaemonSets (deploy/upstream-compat/, written
out from upstream's shape) with only the image swapped to ours make a working node. The chart's
agent is taken away for the test; the device-plugin pod gets the one environment variable that
points it at a simulated host, which lives under the node's /var/lib/kubelet/ (the only host
directory of the node's that pod mounts whole). A pod then gets a VF through the `sriov` binary
upstream's CNI DaemonSet installed, reaching the agent by the socket under
/var/lib/kubelet/plugins/."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import grpc
import yaml

from sriovkit.kubeapi import podresources_pb2 as pr_pb
from sriovkit.kubeapi import podresources_pb2_grpc as pr_grpc
from sriovkit.sim import host as sim
from tests.kube.cluster import NAMESPACE, RELEASE, REPO, RESOURCE, Cluster, sriovctl
from tests.kube.helpers import AGENT_LABEL, Kube, vf_settings, wait_for

UPSTREAM = REPO / "deploy" / "upstream-compat"


def upstream_objects(sim_dir: str) -> list[dict[str, Any]]:
    """Upstream's ConfigMap and DaemonSets as written out, plus the simulated host root's variable."""
    objects = [o for f in ("configmap.yaml", "sriovdp-daemonset.yaml", "sriov-cni-daemonset.yaml")
               for o in yaml.safe_load_all((UPSTREAM / f).read_text()) if o]
    for obj in objects:
        if obj["kind"] == "DaemonSet" and obj["metadata"]["name"] == "kube-sriov-device-plugin":
            [container] = obj["spec"]["template"]["spec"]["containers"]
            container.setdefault("env", []).append({"name": "SRIOVKIT_HOST_ROOT", "value": sim_dir})
    return objects


def host_vfs_of(root: Path) -> dict[str, str]:
    """PCI address -> interface name of each VF of the simulated host at `root` that is in the host."""
    return {d.pci_address: d.netdev for d in sim.open_existing(root).devices()
            if d.vf_index is not None and d.netdev and Path(f"/sys/class/net/{d.netdev}").exists()}


def kubelet_allocatable(cluster: Cluster, resource: str) -> set[str]:
    """The device IDs of `resource` the kubelet can allocate (podresources GetAllocatableResources)."""
    with grpc.insecure_channel(f"unix:{cluster.pod_resources_socket}") as channel:
        reply = pr_grpc.PodResourcesListerStub(channel).GetAllocatableResources(
            pr_pb.AllocatableResourcesRequest(), timeout=10)
    return {i for d in reply.devices if d.resource_name == resource for i in d.device_ids}


def test_upstreams_daemonsets_with_our_image_give_pods_vfs(kube: Kube, cluster: Cluster) -> None:
    sim_dir = f"/var/lib/kubelet/sriovkit-sim-{secrets.token_hex(3)}"
    sim_root = cluster.node_path(sim_dir)
    spec = cluster.state / "upstream-simhost.json"
    # its own PCI addresses: the kubelet tells its devices from the chart's agent's ones
    spec.write_text(json.dumps({"pfs": [{"name": f"up{secrets.token_hex(3)}", "numVfs": 4,
                                         "address": "0000:5e:00.0"}]}))
    objects = upstream_objects(sim_dir)

    def restore() -> None:  # the chart's install again, as every other test expects it
        for obj in reversed(objects):
            if obj["kind"] != "ConfigMap":
                kube.delete(obj["kind"].lower(), obj["metadata"]["name"], namespace=NAMESPACE)
        # the device-plugin pod (hostNetwork) must be gone before the chart's agent serves the same
        # pools; the CNI pod holds nothing of the node's: deleted at once, not after its grace period
        wait_for("upstream's device-plugin pod gone",
                 lambda: not kube.list("pods", NAMESPACE, "name=sriov-device-plugin"), timeout=120)
        kube.run("delete", "pods", "-n", NAMESPACE, "-l", "name=sriov-cni", "--force", "--grace-period=0",
                 "--ignore-not-found", check=False)
        if sim_root.exists():
            subprocess.run([sriovctl(), "sim", "destroy", str(sim_root)], capture_output=True, timeout=120,
                           check=False)
        cluster.install_sriovkit()
        cluster.wait_allocatable(RESOURCE, 4, timeout=240)
        # the node's count can still be upstream's 4 devices, gone with their plugin: the next
        # test's pod then failed admission ("no healthy devices present"). Wait for the chart's own.
        ours = set(host_vfs_of(cluster.sim_root))
        wait_for("the kubelet offering the chart's agent's VFs again",
                 lambda: kubelet_allocatable(cluster, RESOURCE) == ours, timeout=240)
    kube.cleanups.append(restore)
    kube.delete("daemonset", f"{RELEASE}-agent", namespace=NAMESPACE)
    wait_for("the chart's agent pod gone", lambda: not kube.list("pods", NAMESPACE, AGENT_LABEL), timeout=120)
    subprocess.run([sriovctl(), "sim", "create", "--veth", str(sim_root), "--spec", str(spec)], check=True,
                   capture_output=True, timeout=120)
    before = host_vfs_of(sim_root)
    assert len(before) == 4

    for obj in objects:
        kube.apply(obj, namespace=NAMESPACE)
    for label in ("name=sriov-device-plugin", "name=sriov-cni"):
        wait_for(f"upstream's {label} pod Running", lambda lbl=label: [
            p for p in kube.list("pods", NAMESPACE, lbl) if p["status"].get("phase") == "Running"], timeout=180)
    # upstream's ConfigMap's one pool, served from the simulated host the variable names
    wait_for("the kubelet offers the upstream pod's VFs", lambda: kubelet_allocatable(cluster, RESOURCE) == set(before),
             timeout=180)

    kube.nad("sriov-up", {"cniVersion": "1.0.0", "type": "sriov", "vlan": 23,
                          "ipam": {"type": "host-local", "subnet": "10.56.221.0/24"}})
    kube.pod("via-upstream", networks="sriov-up", vfs=1)
    kube.wait_running("via-upstream")
    [pci] = kube.pod_devices("via-upstream")
    assert pci in before and pci not in host_vfs_of(sim_root), "the kubelet's VF, moved into the pod"
    assert "net1" in kube.pod_links("via-upstream")
    assert vf_settings(cluster, pci, sim_root).vlan == 23
    assert (cluster.node_path("/var/lib/kubelet/plugins/sriovkit/cni.sock")).is_socket()

    kube.delete("pod", "via-upstream")
    assert wait_for("the VF back in the host", lambda: host_vfs_of(sim_root) == before, timeout=90)
    assert vf_settings(cluster, pci, sim_root).vlan == 0
