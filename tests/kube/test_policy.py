"""Scenario 11 of issue 15: the node policy on the real node. The chart with agent.policy runs
`sriovctl agent --policy` from its ConfigMap: the VFs the policy asks for are created on the
simulated host's second PF (it starts with none), the pool it defines is on the node, a pod runs
on one of them (the simulator gives a VF the policy creates a veth, as a NIC gives a new VF its
netdev); an edited policy changes the node without restarting anything."""

from __future__ import annotations

import json
from typing import Any

from tests.kube.cluster import NAMESPACE, RELEASE, RESOURCE, Cluster
from tests.kube.helpers import Kube, simulated_host, vf_settings, wait_for
from tests.kube.test_flow import host_vfs

POLICY_RESOURCE = "intel.com/kube_policy"


def policy_vfs(cluster: Cluster, pf_name: str) -> list[str]:
    """The PCI addresses of the VFs of `pf_name` on the simulated host, as its sysfs tree has them."""
    host = simulated_host(cluster)
    devices = host.devices()
    pf = next(d.pci_address for d in devices if d.netdev == pf_name)
    return sorted(d.pci_address for d in devices if d.pf_address == pf and d.vf_index is not None)


def policy(pf_name: str, num_vfs: int) -> dict[str, Any]:
    return {"policies": [{"name": "kube-policy", "resourceName": "kube_policy",
                          "nicSelector": {"pfNames": [pf_name]}, "numVfs": num_vfs}]}


def test_node_policy_creates_vfs_and_serves_their_pool(kube: Kube, cluster: Cluster) -> None:
    pf = cluster.pf_names()[1]
    assert policy_vfs(cluster, pf) == [], "the second PF starts without VFs"
    old_agent = kube.agent_pod()["metadata"]["uid"]

    def set_policy(num_vfs: int) -> None:
        patch = json.dumps({"data": {"policy.json": json.dumps(policy(pf, num_vfs))}})
        kube.run("patch", "configmap", f"{RELEASE}-policy", "-n", NAMESPACE, "--type=merge", "-p", patch)

    def back_to_config() -> None:  # no VF of the policy's left for the tests after this one
        set_policy(0)
        wait_for("the policy's VFs removed", lambda: policy_vfs(cluster, pf) == [], timeout=240, interval=1)
        cluster.install_sriovkit()
        cluster.wait_allocatable(RESOURCE, 4, timeout=240)
    kube.cleanups.append(back_to_config)
    cluster.install_sriovkit({"agent": {"policy": policy(pf, 3)}})

    def new_agent_ready() -> dict | None:
        pod = kube.agent_pod()
        ready = all(c.get("ready") for c in pod["status"].get("containerStatuses", [{}]))
        return pod if pod["metadata"]["uid"] != old_agent and ready else None
    agent = wait_for("the agent pod with --policy, Ready", new_agent_ready, timeout=180)
    assert any(a.startswith("--policy=") for a in agent["spec"]["containers"][0]["args"])
    cluster.wait_allocatable(POLICY_RESOURCE, 3, timeout=180)
    created = policy_vfs(cluster, pf)
    assert len(created) == 3, "the VFs the policy asks for, created through the PF's sriov_numvfs"
    assert set(created) <= set(host_vfs(cluster)), "each with its interface in the host namespace"

    # a pod on one of them: the kubelet allocates it from the policy's pool, our CNI attaches it
    kube.nad("sriov-policy", {"cniVersion": "1.0.0", "type": "sriov", "vlan": 33,
                              "ipam": {"type": "host-local", "subnet": "10.56.222.0/24"}}, resource=POLICY_RESOURCE)
    kube.pod("on-policy", networks="sriov-policy", vfs=1, resource=POLICY_RESOURCE)
    kube.wait_running("on-policy")
    [pci] = kube.pod_devices("on-policy", POLICY_RESOURCE)
    assert pci in created and pci not in host_vfs(cluster)
    assert "net1" in kube.pod_links("on-policy")
    assert vf_settings(cluster, pci).vlan == 33
    kube.delete("pod", "on-policy")
    wait_for("the policy's VF back in the host", lambda: pci in host_vfs(cluster), timeout=90)
    assert vf_settings(cluster, pci).vlan == 0

    # the policy edited: the VFs follow it, and the pool, the agent never restarted
    set_policy(1)
    wait_for("the edited policy applied: one VF", lambda: len(policy_vfs(cluster, pf)) == 1, timeout=240, interval=1)
    cluster.wait_allocatable(POLICY_RESOURCE, 1, timeout=180)
    now = kube.agent_pod()
    assert now["metadata"]["uid"] == agent["metadata"]["uid"]
    assert now["status"]["containerStatuses"][0]["restartCount"] == agent["status"]["containerStatuses"][0][
        "restartCount"]
