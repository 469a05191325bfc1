"""Issue 16 part 3 on the real node: upstream decodes config.json with Go's encoding/json, so a
copy of a config with its keys in other cases (ResourceName, Selectors, PfNames, ..., Go's fold
runes included: U+017F for s) is the same config. Installed through the chart (its values schema
as Helm checks it, its ConfigMap), the case-varied copy gives the node the original's pools: the
same resources with the same devices, as the kubelet reports them."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.kube.cluster import RESOURCE, Cluster
from tests.kube.helpers import Kube, wait_for
from tests.kube.test_upstream import kubelet_allocatable

POOLS = ("intel.com/kube_left", "intel.com/kube_right")


def original(pf: str) -> list[dict[str, Any]]:
    return [
        {"resourceName": "kube_left", "selectors": {"vendors": ["8086"], "pfNames": [f"{pf}#0-1"]}},
        {"resourceName": "kube_right", "deviceType": "netDevice",
         "selectors": {"devices": ["1889"], "drivers": ["iavf"], "pfNames": [f"{pf}#2-3"]}},
    ]


def case_varied(pf: str) -> list[dict[str, Any]]:
    """`original` with every key respelled in a case Go's encoding/json still matches."""
    return [
        {"ResourceName": "kube_left", "SELECTORS": {"Vendors": ["8086"], "PfNames": [f"{pf}#0-1"]}},
        {"re\u017fourcename": "kube_right", "DeviceType": "netDevice",
         "\u017felectors": {"DEVICES": ["1889"], "Drivers": ["iavf"], "pfnames": [f"{pf}#2-3"]}},
    ]


def agent_metrics(cluster: Cluster) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The agent's metrics (hostNetwork: its port on the node's loopback): (name, labels) -> value."""
    url = f"http://127.0.0.1:{cluster.info['ports']['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


def node_pools(kube: Kube, cluster: Cluster) -> dict[str, tuple[str, set[str]]]:
    """Each pool of POOLS and RESOURCE: (the node's allocatable, the device IDs the kubelet has)."""
    allocatable = kube.allocatable()
    return {r: (allocatable.get(r, "0"), kubelet_allocatable(cluster, r)) for r in (*POOLS, RESOURCE)}


def test_a_case_varied_copy_of_the_config_gives_the_originals_pools(kube: Kube, cluster: Cluster) -> None:
    pf = cluster.pf_names()[0]
    agent = kube.agent_pod()["metadata"]["uid"]

    def back_to_default() -> None:
        cluster.install_sriovkit()
        cluster.wait_allocatable(RESOURCE, 4, timeout=180)
        wait_for("the split pools gone", lambda: kube.allocatable().get(POOLS[0], "0") == "0", timeout=60)
    kube.cleanups.append(back_to_default)

    cluster.install_sriovkit({"config": {"resourceList": original(pf)}})

    def split() -> dict[str, tuple[str, set[str]]] | None:
        pools = node_pools(kube, cluster)
        counted = {r: pools[r][0] for r in pools} == {POOLS[0]: "2", POOLS[1]: "2", RESOURCE: "0"}
        return pools if counted and all(len(pools[r][1]) == 2 for r in POOLS) else None
    before = wait_for("the original config's pools on the node", split, timeout=180, interval=1)
    assert not before[POOLS[0]][1] & before[POOLS[1]][1]
    reloads = sample(agent_metrics(cluster), "sriovkit_config_reloads_total", result="success") or 0.0

    cluster.install_sriovkit({"config": {"resourceList": case_varied(pf)}})
    configmap = kube.get("configmap", "sriovdp-config", "kube-system")["data"]["config.json"]
    assert json.loads(configmap) == {"resourceList": case_varied(pf)}  # the chart took it as written

    def varied_loaded() -> bool:  # the agent read the new file and runs with it (no failure kept the old)
        m = agent_metrics(cluster)
        return (sample(m, "sriovkit_config_reloads_total", result="success") or 0.0) > reloads and \
            sample(m, "sriovkit_config_last_reload_successful") == 1.0
    wait_for("the agent reloading the case-varied config", varied_loaded, timeout=180, interval=1)
    metrics = agent_metrics(cluster)
    for resource in POOLS:
        assert sample(metrics, "sriovkit_pool_devices", resource=resource, health="healthy") == 2.0, resource
    assert wait_for("the node's pools as the original's", lambda: node_pools(kube, cluster) == before,
                    timeout=60, interval=1)
    assert kube.agent_pod()["metadata"]["uid"] == agent, "applied without restarting the agent"
