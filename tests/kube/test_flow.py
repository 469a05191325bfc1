"""Scenarios 1-4 of issue 15 on the real node: pools on the node, the seeds' flow end to end
(kubelet allocation, Multus delegation, our CNI, VLAN on the PF, network-status, PCIDEVICE_*),
Insufficient VFs, a VF given back."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from sriovkit.cni.state import StateStore
from tests.kube.cluster import NAMESPACE, RESOURCE, Cluster
from tests.kube.helpers import STATUS, Kube, env_key, simulated_host, vf_settings, vf_settings_all, wait_for

SUBNET = "10.56.217.0/24"


def vlan_nad(kube: Kube, name: str = "sriov-vlan", vlan: int = 100, **extra: object) -> None:
    kube.nad(name, {"cniVersion": "1.0.0", "type": "sriov", "vlan": vlan, **extra,
                    "ipam": {"type": "host-local", "subnet": SUBNET, "rangeStart": "10.56.217.171",
                             "rangeEnd": "10.56.217.181", "gateway": "10.56.217.1"}})


def host_vfs(cluster: Cluster) -> dict[str, tuple[str, str]]:
    """PCI address -> (interface name, MAC) of each VF whose interface is in the host namespace."""
    out = {}
    for device in simulated_host(cluster).devices():
        if device.vf_index is None or device.netdev is None:
            continue
        net = Path("/sys/class/net") / device.netdev
        if net.exists():
            out[device.pci_address] = (device.netdev, (net / "address").read_text().strip())
    return out


def attachment_records(cluster: Cluster) -> list[str]:
    """The sriov CNI's attachment records (done, pending, half-written) on the node."""
    state = cluster.node_path("/var/lib/cni/sriov")
    if not state.exists():
        return []
    store = StateStore(str(state))
    return sorted([r.key for r in store.records(pending=True)] + [p.name for p in state.glob(".tmp-*")])


def test_allocatable_lists_the_configmaps_pools(kube: Kube) -> None:
    config = json.loads(kube.get("configmap", "sriovdp-config", NAMESPACE)["data"]["config.json"])
    names = [f"intel.com/{r['resourceName']}" for r in config["resourceList"]]
    assert RESOURCE in names
    allocatable = kube.allocatable()
    # the simulated host has 4 iavf VFs: the netdevice pool has them, the vfio-pci pool none
    assert allocatable[RESOURCE] == "4"
    assert allocatable.get("intel.com/intel_sriov_dpdk", "0") == "0"
    # (a pool an earlier config had stays listed at 0 until the kubelet forgets it, minutes later)
    assert {r for r, n in allocatable.items() if n != "0"} - {"cpu", "memory", "pods", "ephemeral-storage"} \
        - {"hugepages-1Gi", "hugepages-2Mi"} <= set(names)


def test_seeds_flow_pod_gets_the_vf_the_kubelet_allocated(kube: Kube, cluster: Cluster) -> None:
    vlan_nad(kube)
    kube.pod("flow", networks="sriov-vlan", vfs=1)
    kube.wait_running("flow")

    devices = kube.pod_devices("flow")
    assert len(devices) == 1
    pci = devices[0]
    # the kernel: net1 in the pod carries an address from the NAD's range
    links = kube.pod_links("flow")
    assert "net1" in links and "eth0" in links
    addrs = [a["local"] for a in links["net1"]["addr_info"] if a["family"] == "inet"]
    assert len(addrs) == 1 and ipaddress.ip_address(addrs[0]) in ipaddress.ip_network(SUBNET)
    # the PF: VLAN 100 on exactly that VF
    vlans = {address: s.vlan for address, s in vf_settings_all(cluster).items()}
    assert vlans.pop(pci) == 100
    assert set(vlans.values()) == {0}
    # the API server: Multus' network-status with our device-info
    status = kube.annotation("flow", STATUS)
    net = next(s for s in status if s["name"] == f"{kube.namespace}/sriov-vlan")
    assert net["interface"] == "net1" and net["ips"] == addrs
    assert net["device-info"]["type"] == "pci" and net["device-info"]["pci"]["pci-address"] == pci
    # the container: the device plugin's env
    assert kube.pod_env("flow")[env_key(RESOURCE)] == pci


def test_more_pods_than_vfs_stay_pending_until_one_goes(kube: Kube) -> None:
    for n in range(4):
        kube.pod(f"vf{n}", vfs=1)
    for n in range(4):
        kube.wait_running(f"vf{n}")
    kube.pod("extra", vfs=1)

    def unschedulable() -> str | None:
        pod = kube.get("pod", "extra")
        cond = next((c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"), {})
        return cond.get("message") if cond.get("reason") == "Unschedulable" else None
    message = wait_for("extra pod Unschedulable", unschedulable, timeout=60)
    assert f"Insufficient {RESOURCE}" in message
    assert kube.get("pod", "extra")["status"]["phase"] == "Pending"

    kube.delete("pod", "vf0")
    kube.wait_running("extra", timeout=120)
    assert len(kube.pod_devices("extra")) == 1


def test_deleted_pod_gives_its_vf_back(kube: Kube, cluster: Cluster) -> None:
    before = host_vfs(cluster)
    assert len(before) == 4
    vlan_nad(kube, vlan=42)
    kube.pod("giver", networks="sriov-vlan", vfs=1)
    pod_ip = kube.wait_running("giver")["status"]["podIP"]
    pci = kube.pod_devices("giver")[0]
    cluster_ipam = cluster.node_path("/var/lib/cni/networks/cluster")
    assert (cluster_ipam / pod_ip).exists()
    assert pci not in host_vfs(cluster)  # it is in the pod now
    assert vf_settings(cluster, pci).vlan == 42
    kube.delete("pod", "giver")

    assert wait_for("VF back in the host namespace", lambda: host_vfs(cluster) == before, timeout=60)
    assert vf_settings(cluster, pci).vlan == 0
    # no attachment record left (no other pod holds a VF now), the address released
    assert attachment_records(cluster) == []
    ipam = cluster.node_path("/var/lib/cni/networks/sriov-vlan")
    assert sorted(p.name for p in ipam.glob("10.*")) == []
    # and Multus' DEL of the cluster network (bridge + host-local) gave the pod's eth0 address back
    assert wait_for("the cluster network's address released", lambda: not (cluster_ipam / pod_ip).exists(),
                    timeout=60)
    assert kube.allocatable()[RESOURCE] == "4"
