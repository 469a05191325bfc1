"""Issue 17 on the real node: the agent's DRA driver with the real kubelet (plugin watcher, DRA
manager), scheduler (allocation from our ResourceSlices) and containerd (CDI). The chart with
dra.enabled, one resource served through DRA beside the device plugin's."""

from __future__ import annotations

import json

from sriovkit.host.sysfs import Sysfs
from sriovkit.sim.host import set_operstate
from tests.kube.cluster import RESOURCE, Cluster
from tests.kube.helpers import Kube, simulated_host, wait_for

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"


def dra_values(cluster: Cluster) -> dict:
    pf0 = cluster.pf_names()[0]
    return {"dra": {"enabled": True}, "config": {"resourceList": [
        {"resourceName": "intel_sriov_netdevice", "selectors": {"pfNames": [f"{pf0}#0-1"]}},
        {"resourceName": "sriov_dra", "servedBy": "dra", "selectors": {"pfNames": [f"{pf0}#2-3"]}}]}}


def back_to_default(cluster: Cluster) -> None:
    """The chart's default install again, and its pool whole before the next test reads it (the
    full suite found test_flow reading allocatable 0 while the default agent was still starting)."""
    cluster.install_sriovkit()
    cluster.wait_allocatable(RESOURCE, 4, timeout=240)


def our_slices(kube: Kube) -> list[dict]:
    items = json.loads(kube.run("get", "resourceslices", "-o", "json").stdout)["items"]
    return [s for s in items if s["spec"]["driver"] == DRIVER and s["spec"]["nodeName"] == kube.cluster.node_name]


def checkpoint(cluster: Cluster) -> dict:
    path = cluster.node_path("/var/lib/sriovkit/dra") / "checkpoint.json"
    return json.loads(path.read_text())["claims"] if path.exists() else {}


def test_dra_claim_on_the_real_node(kube: Kube, cluster: Cluster) -> None:
    old_agent = kube.agent_pod()["metadata"]["uid"]
    kube.cleanups.append(lambda: back_to_default(cluster))
    cluster.install_sriovkit(dra_values(cluster))
    wait_for("the agent pod with DRA, Ready", lambda: kube.agent_pod()["metadata"]["uid"] != old_agent
             and all(c.get("ready") for c in kube.agent_pod()["status"].get("containerStatuses", [{}])),
             timeout=180)
    host = simulated_host(cluster)
    pf0 = cluster.pf_names()[0]
    vfs = sorted(d.pci_address for d in host.devices() if d.vf_index is not None and d.pf_address == host.pf_address(0))
    dra_vfs = vfs[2:4]
    names = sorted(v.replace(":", "-").replace(".", "-") for v in dra_vfs)
    # 1. the slices list exactly the DRA-served VFs; the device plugin offers only the others
    slices = wait_for("our ResourceSlice", lambda: [s for s in our_slices(kube) if s["spec"]["devices"]], timeout=120)
    assert sorted(d["name"] for s in slices for d in s["spec"]["devices"]) == names
    attrs = slices[0]["spec"]["devices"][0]["attributes"]
    assert attrs[f"{DRIVER}/PFName"] == {"string": pf0}
    assert attrs["k8s.cni.cncf.io/resourceName"] == {"string": "intel.com/sriov_dra"}
    wait_for("2 VFs through the device plugin", lambda: kube.allocatable().get(RESOURCE) == "2", timeout=120)
    # 2. a claim template selecting by PFName; the scheduler allocates, the kubelet prepares
    kube.apply({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
                "metadata": {"name": "vf-on-pf0"},
                "spec": {"spec": {"devices": {"requests": [{"name": "vf", "exactly": {
                    "deviceClassName": "sriov-vf", "selectors": [{"cel": {"expression":
                        f"device.attributes['{DRIVER}'].PFName == '{pf0}'"}}]}}]}}}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dra"},
                "spec": {"terminationGracePeriodSeconds": 0,
                         "resourceClaims": [{"name": "net", "resourceClaimTemplateName": "vf-on-pf0"}],
                         "containers": [{"name": "main", "image": "localhost/sriovkit-kube-pause:1",
                                         "imagePullPolicy": "Never", "resources": {"claims": [{"name": "net"}]}}]}})
    kube.pod("dp", vfs=1)  # a device-plugin pod beside it: both kinds run, from disjoint VFs
    kube.wait_running("dra", timeout=180)
    kube.wait_running("dp", timeout=180)
    assert set(kube.pod_devices("dp")) <= set(vfs[:2])
    (claim,) = json.loads(kube.run("get", "resourceclaims", "-n", kube.namespace, "-o", "json").stdout)["items"]
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert result["driver"] == DRIVER and result["device"] in names
    pci = dra_vfs[names.index(result["device"])]
    # 3. CDI through containerd: the container has the variables of the claim's CDI devices
    env = kube.pod_env("dra")
    assert env["SRIOVNETWORK_PCI_ADDRESSES"] == pci
    assert env["PCIDEVICE_INTEL_COM_SRIOV_DRA"] == pci
    assert list(checkpoint(cluster)) == [claim["metadata"]["uid"]]
    # 4. the pod deleted: unprepare runs, the slice is unchanged
    before = sorted(d["name"] for s in our_slices(kube) for d in s["spec"]["devices"])
    kube.delete("pod", "dra")
    wait_for("the claim unprepared", lambda: checkpoint(cluster) == {}, timeout=120)
    assert sorted(d["name"] for s in our_slices(kube) for d in s["spec"]["devices"]) == before


def test_pf_link_down_its_vfs_are_unhealthy_through_dra(kube: Kube, cluster: Cluster) -> None:
    """Issue 17 test 7: the PF's link goes down (the simulated NIC's operstate, which the agent's
    health monitor reads as it reads a real one's): its DRA VFs leave the ResourceSlice and its
    device-plugin VFs leave the node's allocatable; back when the link is."""
    old_agent = kube.agent_pod()["metadata"]["uid"]
    kube.cleanups.append(lambda: back_to_default(cluster))
    cluster.install_sriovkit(dra_values(cluster))
    wait_for("the agent pod with DRA, Ready", lambda: kube.agent_pod()["metadata"]["uid"] != old_agent
             and all(c.get("ready") for c in kube.agent_pod()["status"].get("containerStatuses", [{}])),
             timeout=180)

    def dra_devices() -> list[str]:  # a slice whose every device is withdrawn has devices: null
        return sorted(d["name"] for s in our_slices(kube) for d in s["spec"].get("devices") or [])
    healthy = wait_for("our ResourceSlice with both DRA VFs", lambda: len(dra_devices()) == 2 and dra_devices(),
                       timeout=120)
    wait_for("2 VFs through the device plugin", lambda: kube.allocatable().get(RESOURCE) == "2", timeout=120)
    sysfs, pf0 = Sysfs(cluster.sim_root), cluster.pf_names()[0]
    kube.cleanups.append(lambda: set_operstate(sysfs, pf0, "up"))  # runs first: before the chart goes back
    set_operstate(sysfs, pf0, "down")
    wait_for("the PF's DRA VFs withdrawn from the slice", lambda: dra_devices() == [], timeout=120)
    wait_for("the PF's device-plugin VFs unhealthy", lambda: kube.allocatable().get(RESOURCE) == "0", timeout=120)
    set_operstate(sysfs, pf0, "up")
    assert wait_for("the DRA VFs back", lambda: dra_devices() == healthy and dra_devices(), timeout=120) == healthy
    wait_for("the device-plugin VFs back", lambda: kube.allocatable().get(RESOURCE) == "2", timeout=120)
