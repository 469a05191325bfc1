"""Scenario 9 of issue 15: hot-plug on the real node. The chart with hotplug.enabled (its
ServiceAccount and RBAC, as the real API server enforces them): a running pod annotated with one
more network gets the interface and an updated network-status. Then hot-plug turned off while a
pod still has a hot-plugged VF: when that pod goes, Multus DELs only what it attached and no
controller is left to DEL the rest; the VF still comes back (the agent's CNI GC releases an
attachment whose sandbox the runtime no longer has and whose netns is gone)."""

from __future__ import annotations

import ipaddress
from typing import Any

from tests.kube.cluster import Cluster
from tests.kube.helpers import NETWORKS, STATUS, Kube, vf_settings, vf_settings_all, wait_for
from tests.kube.test_flow import SUBNET, attachment_records, host_vfs, vlan_nad

HOTPLUG = {"hotplug": {"enabled": True, "vhostuser": False}}


def wait_new_agent(kube: Kube, old_uid: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pod = kube.agent_pod()
        ok = pod["metadata"]["uid"] != old_uid and all(
            c.get("ready") for c in pod["status"].get("containerStatuses", [{}]))
        return pod if ok else None
    return dict(wait_for("a new agent pod, Ready", ready, timeout=180))


def hot_plugged(kube: Kube, pod: str, network: str) -> dict[str, Any]:
    def attached() -> dict[str, Any] | None:
        status = kube.annotation(pod, STATUS) or []
        return next((s for s in status if s["name"] == f"{kube.namespace}/{network}"), None)
    return dict(wait_for(f"{pod}'s network-status naming the hot-plugged network", attached, timeout=120))


def test_running_pod_annotated_with_one_more_network_gets_it(kube: Kube, cluster: Cluster) -> None:
    old_agent = kube.agent_pod()["metadata"]["uid"]
    kube.cleanups.append(cluster.install_sriovkit)  # back to the default install afterwards
    cluster.install_sriovkit(HOTPLUG)
    agent = wait_new_agent(kube, old_agent)
    assert "--hotplug" in agent["spec"]["containers"][0]["args"]

    vlan_nad(kube, name="first", vlan=21)
    vlan_nad(kube, name="second", vlan=22)
    for pod in ("grows", "stays"):
        kube.pod(pod, networks="first", vfs=2)  # one VF more than it uses at start
        # deleted while the controller still runs: Multus DELs only what it attached, the
        # hot-plugged network's DEL is the controller's (cleanups run last-added first, before the chart's)
        kube.cleanups.append(lambda p=pod: kube.delete("pod", p))
    for pod in ("grows", "stays"):
        kube.wait_running(pod)
        assert "net2" not in kube.pod_links(pod)
        kube.run("annotate", "pod", pod, "-n", kube.namespace, "--overwrite", f"{NETWORKS}=first,second")

    entry = hot_plugged(kube, "grows", "second")
    links = kube.pod_links("grows")
    assert entry["interface"] in links and entry["interface"] not in ("eth0", "net1")
    addrs = [a["local"] for a in links[entry["interface"]]["addr_info"] if a["family"] == "inet"]
    assert entry["ips"] == addrs and ipaddress.ip_address(addrs[0]) in ipaddress.ip_network(SUBNET)
    pci = entry["device-info"]["pci"]["pci-address"]
    assert pci in kube.pod_devices("grows")
    assert vf_settings(cluster, pci).vlan == 22
    assert any(e.startswith("AddedInterface:") and "second" in e for e in kube.events("grows"))
    stays = hot_plugged(kube, "stays", "second")
    assert stays["interface"] in kube.pod_links("stays")
    held = set(kube.pod_devices("stays"))
    assert len(held) == 2

    # deleted: both its VFs come back, the one Multus attached and the one the controller did
    kube.delete("pod", "grows")
    assert wait_for("grows' VFs back in the host namespace", lambda: len(host_vfs(cluster)) == 2, timeout=90)
    def only_stays() -> list[str]:
        records = attachment_records(cluster)
        if len(records) != 2:
            raise AssertionError(f"attachment records: {records}")
        return records
    wait_for("only stays' attachments recorded", only_stays, timeout=30)

    # hot-plug turned off (the default install) while stays still has its hot-plugged VF
    cluster.install_sriovkit()
    agent = wait_new_agent(kube, agent["metadata"]["uid"])
    assert "--hotplug" not in agent["spec"]["containers"][0]["args"]
    assert stays["interface"] in kube.pod_links("stays"), "the pod keeps what was hot-plugged"
    assert set(host_vfs(cluster)).isdisjoint(held)

    kube.delete("pod", "stays")
    # Multus gives back the VF it attached; the hot-plugged one has no DEL coming: the agent's
    # CNI GC (chart default: every 60 s) releases it once the sandbox and its netns are gone
    assert wait_for("both of stays' VFs back in the host namespace", lambda: len(host_vfs(cluster)) == 4,
                    timeout=240, interval=1)
    assert wait_for("no attachment record left", lambda: attachment_records(cluster) == [], timeout=30)
    assert {s.vlan for s in vf_settings_all(cluster).values()} == {0}
