"""Scenario 10 of issue 15: whereabouts as the IPAM of an `sriov` network. The agent runs IPAM
plugins inside its container, so this finds out whether the chart gives that container what
whereabouts needs: its configuration and kubeconfig under /etc/cni/net.d/whereabouts.d, the API
server. Addresses are allocated and released cluster-wide (whereabouts' IPPool objects)."""

from __future__ import annotations

import ipaddress
import json

from tests.kube.cluster import Cluster
from tests.kube.helpers import Kube, wait_for

RANGE = "10.57.1.0/28"


def allocations(kube: Kube) -> dict[str, dict]:
    pools = json.loads(kube.run("get", "ippools.whereabouts.cni.cncf.io", "-A", "-o", "json").stdout)["items"]
    return {k: v for pool in pools if pool["spec"]["range"] == RANGE
            for k, v in (pool["spec"].get("allocations") or {}).items()}


def test_whereabouts_allocates_and_releases_cluster_wide(kube: Kube, cluster: Cluster) -> None:
    kube.nad("sriov-wb", {"cniVersion": "1.0.0", "type": "sriov", "vlan": 31,
                          "ipam": {"type": "whereabouts", "range": RANGE}})
    for name in ("wb1", "wb2"):
        kube.pod(name, networks="sriov-wb", vfs=1)
    addrs = {}
    for name in ("wb1", "wb2"):
        kube.wait_running(name)
        net1 = kube.pod_links(name)["net1"]
        addrs[name] = next(a["local"] for a in net1["addr_info"] if a["family"] == "inet")
        assert ipaddress.ip_address(addrs[name]) in ipaddress.ip_network(RANGE)
    assert addrs["wb1"] != addrs["wb2"]
    held = allocations(kube)
    assert sorted(a["podref"] for a in held.values()) == [f"{kube.namespace}/wb1", f"{kube.namespace}/wb2"]

    kube.delete("pod", "wb1")
    wait_for("wb1's address released in the IPPool", lambda: [a["podref"] for a in allocations(kube).values()]
             == [f"{kube.namespace}/wb2"], timeout=60)
    kube.delete("pod", "wb2")
    wait_for("every address released", lambda: allocations(kube) == {}, timeout=60)
