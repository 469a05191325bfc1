"""Scenario 9 of issue 15: hot-plug on the real node. The chart with hotplug.enabled (its
ServiceAccount and RBAC, as the real API server enforces them): a running pod annotated with one
more network gets the interface and an updated network-status."""

from __future__ import annotations

import ipaddress

from tests.kube.cluster import Cluster
from tests.kube.helpers import NETWORKS, STATUS, Kube, vf_settings, wait_for
from tests.kube.test_flow import SUBNET, attachment_records, host_vfs, vlan_nad

HOTPLUG = {"hotplug": {"enabled": True, "vhostuser": False}}


def test_running_pod_annotated_with_one_more_network_gets_it(kube: Kube, cluster: Cluster) -> None:
    old_agent = kube.agent_pod()["metadata"]["uid"]
    kube.cleanups.append(cluster.install_sriovkit)  # back to the default install afterwards
    cluster.install_sriovkit(HOTPLUG)
    wait_for("the agent pod with hot-plug, Ready", lambda: kube.agent_pod()["metadata"]["uid"] != old_agent
             and all(c.get("ready") for c in kube.agent_pod()["status"].get("containerStatuses", [{}])),
             timeout=180)
    args = kube.agent_pod()["spec"]["containers"][0]["args"]
    assert "--hotplug" in args

    vlan_nad(kube, name="first", vlan=21)
    vlan_nad(kube, name="second", vlan=22)
    kube.pod("grows", networks="first", vfs=2)  # one VF more than it uses at start
    # deleted while the controller still runs: Multus DELs only what it attached, the hot-plugged
    # network's DEL is the controller's (cleanups run last-added first, before the chart's)
    kube.cleanups.append(lambda: kube.delete("pod", "grows"))
    kube.wait_running("grows")
    assert "net2" not in kube.pod_links("grows")

    kube.run("annotate", "pod", "grows", "-n", kube.namespace, "--overwrite", f"{NETWORKS}=first,second")

    def second_attached() -> dict | None:
        status = kube.annotation("grows", STATUS) or []
        return next((s for s in status if s["name"] == f"{kube.namespace}/second"), None)
    entry = wait_for("network-status naming the hot-plugged network", second_attached, timeout=120)
    links = kube.pod_links("grows")
    assert entry["interface"] in links and entry["interface"] not in ("eth0", "net1")
    addrs = [a["local"] for a in links[entry["interface"]]["addr_info"] if a["family"] == "inet"]
    assert entry["ips"] == addrs and ipaddress.ip_address(addrs[0]) in ipaddress.ip_network(SUBNET)
    pci = entry["device-info"]["pci"]["pci-address"]
    assert pci in kube.pod_devices("grows")
    assert vf_settings(cluster, pci).vlan == 22
    assert any(e.startswith("AddedInterface:") and "second" in e for e in kube.events("grows"))

    # deleted: both VFs come back, the one Multus attached and the one the controller did
    kube.delete("pod", "grows")
    assert wait_for("both VFs back in the host namespace", lambda: len(host_vfs(cluster)) == 4, timeout=90)
    assert wait_for("no attachment record left", lambda: attachment_records(cluster) == [], timeout=30)
