"""Scenario 8 of issue 15: an ADD the NIC refuses, seen where an operator sees it (the pod's
events), with nothing moved; fixing the NAD lets the same pod start."""

from __future__ import annotations

from tests.kube.cluster import Cluster
from tests.kube.helpers import Kube, vf_settings_all, wait_for
from tests.kube.test_flow import host_vfs, vlan_nad


def test_add_the_nic_refuses_is_one_line_in_the_pods_events(kube: Kube, cluster: Cluster) -> None:
    before_links, before_settings = host_vfs(cluster), vf_settings_all(cluster)
    # the simulated PF has no rate limiter (unsupportedVfSettings: minTxRate), like a driver without the knob
    vlan_nad(kube, name="sriov-rate", vlan=11, min_tx_rate=100, max_tx_rate=1000)
    kube.pod("refused", networks="sriov-rate", vfs=1)

    def our_error() -> str | None:
        return next((e for e in kube.events("refused") if "does not support minTxRate" in e), None)
    event = wait_for("the pod's event with the NIC's refusal", our_error, timeout=120)
    assert event.startswith("FailedCreatePodSandBox:")
    ours = event[event.index("min_tx_rate"):] if "min_tx_rate" in event else event
    assert "\n" not in ours and "Traceback" not in event
    assert kube.get("pod", "refused")["status"]["phase"] == "Pending"
    # nothing moved, nothing changed on the PF
    assert host_vfs(cluster) == before_links
    assert vf_settings_all(cluster) == before_settings

    vlan_nad(kube, name="sriov-rate", vlan=11)  # the NAD fixed: no rate limit asked
    kube.wait_running("refused", timeout=240)
    pci = kube.pod_devices("refused")[0]
    assert "net1" in kube.pod_links("refused")
    assert vf_settings_all(cluster)[pci].vlan == 11
