"""Scenarios 5-7 of issue 15: the kubelet restarted, the agent's pod deleted, the ConfigMap
edited, each on the real node with pods holding VFs."""

from __future__ import annotations

import json
import os
import time

from sriovkit.cni.state import StateStore
from tests.kube.cluster import NAMESPACE, RESOURCE, Cluster
from tests.kube.helpers import Kube, vf_settings, wait_for
from tests.kube.test_flow import host_vfs, vlan_nad
from tests.support.endpoints import http_get

REGISTERED = "Got registration request from device plugin"


def registrations(cluster: Cluster) -> int:
    return sum(REGISTERED in line for line in cluster.log_lines("kubelet"))


def test_kubelet_restart_plugins_reregister_pods_keep_their_vfs(kube: Kube, cluster: Cluster) -> None:
    vlan_nad(kube, vlan=7)
    kube.pod("before", networks="sriov-vlan", vfs=1)
    kube.wait_running("before")
    pci = kube.pod_devices("before")[0]
    seen = registrations(cluster)
    readyz = f"http://127.0.0.1:{cluster.info['ports']['metrics']}/readyz"  # the probe's endpoint (hostNetwork)
    assert http_get(readyz)[0] == 200

    def agent_unready() -> None:  # issue 16: /readyz says the kubelet is gone, while it is
        code, body = wait_for("/readyz unready while the kubelet is away",
                              lambda: (r := http_get(readyz))[0] == 503 and r, timeout=90, interval=0.2)
        assert "kubelet" in body, body
    started = cluster.restart_kubelet(while_down=agent_unready)
    wait_for("the agent's device plugin registered again with the new kubelet",
             lambda: registrations(cluster) > seen, timeout=120, interval=0.1)
    print(f"\ndevice plugin re-registered {time.monotonic() - started:.1f} s after the kubelet was started")
    cluster.wait_node_ready(timeout=120)
    wait_for("/readyz ready again", lambda: http_get(readyz)[0] == 200, timeout=60, interval=0.2)
    wait_for("the agent pod Ready again (the real kubelet probing /readyz)",
             lambda: all(c.get("ready") for c in kube.agent_pod()["status"].get("containerStatuses", [{}])),
             timeout=60)

    # the running pod keeps its VF: same allocation (once the new kubelet has the pod from the
    # API server, podresources answers for it), still in its namespace, VLAN still set
    assert wait_for("the new kubelet's podresources answer for the running pod",
                    lambda: kube.pod_devices("before"), timeout=60) == [pci]
    assert "net1" in kube.pod_links("before")
    assert vf_settings(cluster, pci).vlan == 7
    # and a new pod still gets one (a different one)
    kube.pod("after", networks="sriov-vlan", vfs=1)
    kube.wait_running("after")
    assert kube.pod_devices("after") not in ([], [pci])
    assert "net1" in kube.pod_links("after")


def test_agent_pod_deleted_daemonset_brings_it_back(kube: Kube, cluster: Cluster) -> None:
    vlan_nad(kube, vlan=9)
    kube.pod("held", networks="sriov-vlan", vfs=1)
    kube.wait_running("held")
    pci = kube.pod_devices("held")[0]
    before = set(host_vfs(cluster))
    old = kube.agent_pod()

    kube.delete("pod", old["metadata"]["name"], namespace=NAMESPACE)

    def new_agent_ready() -> dict | None:
        pod = kube.agent_pod()
        ready = all(c.get("ready") for c in pod["status"].get("containerStatuses", [{}]))
        return pod if pod["metadata"]["uid"] != old["metadata"]["uid"] and ready else None
    wait_for("a new agent pod, Ready", new_agent_ready, timeout=180)
    cluster.wait_allocatable(RESOURCE, 4, timeout=120)
    assert set(host_vfs(cluster)) == before  # pools intact: nothing moved while the agent was away
    assert kube.pod_devices("held") == [pci]

    # the pod created before the agent went away is torn down cleanly by the new one
    kube.delete("pod", "held")
    assert wait_for("VF back in the host namespace", lambda: pci in host_vfs(cluster), timeout=60)
    assert vf_settings(cluster, pci).vlan == 0


def restart_agent(kube: Kube) -> None:
    """Delete the agent's pod; return once the DaemonSet's new one is Ready."""
    old = kube.agent_pod()
    kube.delete("pod", old["metadata"]["name"], namespace=NAMESPACE)

    def new_agent_ready() -> dict | None:
        pod = kube.agent_pod()
        ready = all(c.get("ready") for c in pod["status"].get("containerStatuses", [{}]))
        return pod if pod["metadata"]["uid"] != old["metadata"]["uid"] and ready else None
    wait_for("a new agent pod, Ready", new_agent_ready, timeout=180)


def test_agent_restarted_during_a_pods_del_the_vf_returns_to_the_pool(kube: Kube, cluster: Cluster) -> None:
    """The leak: the pod's DEL comes while the agent is away (its socket absent: the shim answers
    "try again"), Multus drops its delegate cache, the kubelet's retries never reach us and the
    sandbox is removed with the VF still recorded as attached. The agent restarted releases it (its
    CNI GC asks containerd over CRI which sandboxes exist), unless the kubelet's retried DEL reaches
    it first: the VF must come back either way. The agent's absence is made exact by
    moving its socket aside for the pod's deletion, then its pod is restarted."""
    baseline = host_vfs(cluster)
    vlan_nad(kube, vlan=11)
    kube.pod("leaky", networks="sriov-vlan", vfs=1)
    kube.wait_running("leaky")
    pci = kube.pod_devices("leaky")[0]
    assert pci not in host_vfs(cluster) and vf_settings(cluster, pci).vlan == 11
    store = StateStore(str(cluster.node_path("/var/lib/cni/sriov")))

    socket = cluster.node_path("/run/sriovkit/cni.sock")
    aside = socket.with_name(f".cni.sock.aside-{os.getpid()}")
    os.rename(socket, aside)

    def restore_socket() -> None:  # for the tests after this one, whatever happened here
        if aside.exists() and not socket.exists():
            os.rename(aside, socket)
        else:
            aside.unlink(missing_ok=True)
    kube.cleanups.append(restore_socket)
    kube.delete("pod", "leaky")  # returns once the kubelet finished with it and the API server removed it
    assert store.owner_of(pci) is not None, "the leak: the VF stays recorded as attached to a gone pod"
    assert vf_settings(cluster, pci).vlan == 11

    restart_agent(kube)
    aside.unlink()
    started = time.monotonic()
    assert wait_for("the VF given back by the restarted agent", lambda: store.owner_of(pci) is None,
                    timeout=300, interval=1)
    print(f"\nforgotten attachment released {time.monotonic() - started:.0f} s after the agent restarted")
    assert host_vfs(cluster)[pci] == baseline[pci], "back in the host under its name, with its MAC"
    assert vf_settings(cluster, pci).vlan == 0
    # the agent's log as the kubelet keeps it (the API server cannot reach this kubelet by name;
    # the runtime copies the container's output there on its own time, so the line may come after)
    pod_logs = cluster.node_path("/var/log/pods")
    agent = kube.agent_pod()["metadata"]["name"]

    def logged() -> bool:
        # Two routes give it back, both the restarted agent's: its CNI GC (the sandbox gone, Multus
        # having dropped its delegate cache), or the kubelet's DEL retried once the socket is back
        # (Multus keeps its cache when its cluster network's DEL succeeds). Either says so in one line.
        return any(pci in line and ("releasing a forgotten attachment" in line or "detached" in line)
                   for f in pod_logs.glob(f"{NAMESPACE}_{agent}_*/agent/*.log") for line in f.read_text().splitlines())
    wait_for("the restarted agent's log line for the release (CNI GC or a retried DEL)", logged, timeout=30)
    cluster.wait_allocatable(RESOURCE, 4, timeout=120)
    # the pool is whole again: every VF can be given to a pod
    for i in range(4):
        kube.pod(f"after-{i}", networks="sriov-vlan", vfs=1)
    for i in range(4):
        kube.wait_running(f"after-{i}")


def test_configmap_edited_pools_change_without_restarts(kube: Kube, cluster: Cluster) -> None:
    configmap = kube.get("configmap", "sriovdp-config", NAMESPACE)
    original = configmap["data"]["config.json"]
    agent = kube.agent_pod()
    pf = cluster.pf_names()[0]
    split = {"resourceList": [
        {"resourceName": "kube_left", "selectors": {"pfNames": [f"{pf}#0-1"]}},
        {"resourceName": "kube_right", "selectors": {"pfNames": [f"{pf}#2-3"]}},
    ]}

    def set_config(text: str) -> None:
        patch = json.dumps({"data": {"config.json": text}})
        kube.run("patch", "configmap", "sriovdp-config", "-n", NAMESPACE, "--type=merge", "-p", patch)
    kube.cleanups.append(lambda: set_config(original))
    set_config(json.dumps(split))

    def split_pools() -> bool:
        a = kube.allocatable()
        return a.get("intel.com/kube_left") == "2" and a.get("intel.com/kube_right") == "2" \
            and a.get(RESOURCE, "0") == "0"
    wait_for("the node's pools as the edited ConfigMap says", split_pools, timeout=180, interval=1)
    now = kube.agent_pod()
    assert now["metadata"]["uid"] == agent["metadata"]["uid"]
    assert now["status"]["containerStatuses"][0]["restartCount"] == agent["status"]["containerStatuses"][0][
        "restartCount"]

    set_config(original)
    cluster.wait_allocatable(RESOURCE, 4, timeout=180)
    wait_for("the split pools gone", lambda: kube.allocatable().get("intel.com/kube_left", "0") == "0", timeout=60)
