"""The resource injector's patch: what network-resources-injector adds for the networks a pod names."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sriovkit.injector.patch import PODNETINFO_PATH, inject

NET = "intel.com/sriov_net"
DPDK = "intel.com/sriov_dpdk"


def nad(namespace: str, name: str, resource: str | None) -> dict[str, Any]:
    annotations = {"k8s.v1.cni.cncf.io/resourceName": resource} if resource else {}
    return {"metadata": {"namespace": namespace, "name": name, "annotations": annotations},
            "spec": {"config": json.dumps({"cniVersion": "1.0.0", "name": name, "type": "sriov"})}}


NADS = {("default", "sriov-a"): nad("default", "sriov-a", NET), ("default", "sriov-b"): nad("default", "sriov-b", DPDK),
        ("other", "sriov-a"): nad("other", "sriov-a", DPDK), ("default", "plain"): nad("default", "plain", None)}


def lookup(namespace: str, name: str) -> dict[str, Any] | None:
    return copy.deepcopy(NADS.get((namespace, name)))


def pod(networks: str | None = None, *, containers: int = 1, labels: dict[str, str] | None = None,
        **container: Any) -> dict[str, Any]:
    annotations = {"k8s.v1.cni.cncf.io/networks": networks} if networks is not None else {}
    meta: dict[str, Any] = {"name": "p", "annotations": annotations}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": f"c{i}", "image": "x", **(container if i == 0 else {})}
                                    for i in range(containers)]}}


def apply(doc: Any, patch: list[dict[str, Any]]) -> Any:
    """RFC 6902 `add`, as the API server applies it; a path whose parent is missing fails as there."""
    out = copy.deepcopy(doc)
    for op in patch:
        assert op["op"] == "add"
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        parent = out
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
        else:
            parent[last] = copy.deepcopy(op["value"])
    return out


def resources(result: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return result["spec"]["containers"][index].get("resources", {})


@pytest.mark.parametrize("networks", [
    "sriov-a", " sriov-a ", "default/sriov-a", "sriov-a@net1", "default/sriov-a@eth9",
    '[{"name": "sriov-a"}]', '[{"name": "sriov-a", "namespace": "default", "interface": "net7"}]',
    '[{"Name": "sriov-a", "Namespace": "default"}]',  # Go's encoding/json: keys match case-insensitively
    '[{"name": "sriov-a", "colour": "blue"}]',         # and unknown keys are ignored
])
def test_every_annotation_form_requests_the_nads_resource(networks: str) -> None:
    outcome = inject(pod(networks), "default", lookup)
    assert outcome.problem is None and outcome.resources == {NET: 1}
    result = apply(pod(networks), outcome.patch)
    assert resources(result) == {"requests": {NET: "1"}, "limits": {NET: "1"}}


def test_a_network_named_twice_counts_twice_and_namespaces_are_kept_apart() -> None:
    networks = "sriov-a, sriov-a@net2, other/sriov-a, sriov-b, plain"
    outcome = inject(pod(networks), "default", lookup)
    assert outcome.resources == {NET: 2, DPDK: 2}
    result = apply(pod(networks), outcome.patch)
    assert resources(result) == {"requests": {NET: "2", DPDK: "2"}, "limits": {NET: "2", DPDK: "2"}}


def test_the_pods_namespace_is_the_default() -> None:
    outcome = inject(pod("sriov-a"), "other", lookup)
    assert outcome.resources == {DPDK: 1}


def test_default_network_annotation_counts_too() -> None:
    p = pod("sriov-b")
    p["metadata"]["annotations"]["v1.multus-cni.io/default-network"] = "default/sriov-a"
    assert inject(p, "default", lookup).resources == {NET: 1, DPDK: 1}


def test_existing_requests_are_kept_and_merged() -> None:
    spec = {"resources": {"requests": {"cpu": "1", NET: "3"}, "limits": {"memory": "1Gi"}}}
    networks = "sriov-a,sriov-a,sriov-b"
    result = apply(pod(networks, **spec), inject(pod(networks, **spec), "default", lookup).patch)
    # the pod's own request of a resource wins; other resources are added beside what it has
    assert resources(result) == {"requests": {"cpu": "1", NET: "3", DPDK: "1"}, "limits": {"memory": "1Gi", DPDK: "1"}}
    honored = apply(pod(networks, **spec), inject(pod(networks, **spec), "default", lookup, honor_existing=True).patch)
    # an extended resource's request and limit must be equal: both become the same total
    assert resources(honored) == {"requests": {"cpu": "1", NET: "5", DPDK: "1"},
                                  "limits": {"memory": "1Gi", NET: "5", DPDK: "1"}}


def test_a_resource_requested_by_another_container_is_not_added_again() -> None:
    p = pod("sriov-a", containers=2)
    p["spec"]["containers"][1]["resources"] = {"limits": {NET: "1"}}
    result = apply(p, inject(p, "default", lookup).patch)
    assert resources(result) == {"requests": {}, "limits": {}}
    assert resources(result, 1) == {"limits": {NET: "1"}}


def test_podnetinfo_volume_holds_labels_and_annotations_mounted_in_every_container() -> None:
    p = pod("sriov-a", containers=2, labels={"app": "x"}, volumeMounts=[{"name": "data", "mountPath": "/data"}])
    p["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    result = apply(p, inject(p, "default", lookup).patch)
    volume = result["spec"]["volumes"][-1]
    assert volume == {"name": "podnetinfo", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}
    mount = {"name": "podnetinfo", "readOnly": True, "mountPath": PODNETINFO_PATH}
    assert result["spec"]["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}, mount]
    assert result["spec"]["containers"][1]["volumeMounts"] == [mount]
    assert result["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}


def test_podnetinfo_already_there_is_not_added_twice() -> None:
    p = pod("sriov-a", volumeMounts=[{"name": "podnetinfo", "mountPath": PODNETINFO_PATH}])
    p["spec"]["volumes"] = [{"name": "podnetinfo", "downwardAPI": {"items": []}}]
    result = apply(p, inject(p, "default", lookup).patch)
    assert len(result["spec"]["volumes"]) == 1 and len(result["spec"]["containers"][0]["volumeMounts"]) == 1


@pytest.mark.parametrize("networks", [None, "", "  ", "plain", "[]"])
def test_nothing_to_inject_is_no_patch(networks: str | None) -> None:
    outcome = inject(pod(networks), "default", lookup)
    assert outcome.patch == [] and outcome.problem is None


@pytest.mark.parametrize("networks", ["sriov-a,missing", "nowhere/sriov-a", '[{"name": "missing"}]',
                                      "sriov-a@net1,sriov-b,gone@net3"])
def test_a_missing_nad_admits_the_pod_unchanged_and_says_which(networks: str) -> None:
    outcome = inject(pod(networks), "default", lookup)
    assert outcome.patch == [] and outcome.reason == "NADNotFound"
    assert "does not exist" in (outcome.problem or "")
    missing = [n for n in ("default/missing", "nowhere/sriov-a", "default/gone") if n in (outcome.problem or "")]
    assert len(missing) == 1


def test_an_unreadable_nad_admits_unchanged() -> None:
    def broken(namespace: str, name: str) -> dict[str, Any] | None:
        raise RuntimeError("503 Service Unavailable")

    outcome = inject(pod("sriov-a"), "default", broken)
    assert outcome.patch == [] and outcome.reason == "NADUnreadable" and "503" in (outcome.problem or "")


@pytest.mark.parametrize("networks", ["a/b/c", "UPPER", "[{", '[{"name": 5}]', "ns/", "sriov-a,,sriov-b",
                                      "[" * 1000 + "]" * 1000, '[{"name": "sriov-a", "ips": NaN}]', "[null]"])
def test_an_unreadable_annotation_admits_unchanged(networks: str) -> None:
    outcome = inject(pod(networks), "default", lookup)
    assert outcome.patch == [] and outcome.reason == "InvalidNetworkAnnotation"


def test_resource_names_are_escaped_as_json_pointers() -> None:
    NADS[("default", "odd")] = nad("default", "odd", "example.com/a~b")
    try:
        outcome = inject(pod("odd"), "default", lookup)
    finally:
        del NADS[("default", "odd")]
    escaped = {"op": "add", "path": "/spec/containers/0/resources/requests/example.com~1a~0b", "value": "1"}
    assert escaped in outcome.patch
    assert resources(apply(pod("odd"), outcome.patch))["requests"] == {"example.com/a~b": "1"}


def test_a_pod_without_resources_key_gets_one() -> None:
    p = pod("sriov-a")
    assert "resources" not in p["spec"]["containers"][0]
    assert resources(apply(p, inject(p, "default", lookup).patch)) == {"requests": {NET: "1"}, "limits": {NET: "1"}}


def test_a_nads_node_selector_is_merged_into_the_pods() -> None:
    NADS[("default", "pinned")] = nad("default", "pinned", NET)
    NADS[("default", "pinned")]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/nodeSelector"] = "sriov = yes"
    NADS[("default", "labelled")] = nad("default", "labelled", None)
    NADS[("default", "labelled")]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/nodeSelector"] = "rack-a"
    try:
        p = pod("pinned, labelled")
        p["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux", "sriov": "no"}
        result = apply(p, inject(p, "default", lookup).patch)
        assert result["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux", "sriov": "yes", "rack-a": ""}
        assert resources(result)["limits"] == {NET: "1"}
        only_selector = apply(pod("labelled"), inject(pod("labelled"), "default", lookup).patch)
        assert only_selector["spec"]["nodeSelector"] == {"rack-a": ""} and "volumes" not in only_selector["spec"]
        NADS[("default", "labelled")]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/nodeSelector"] = "a=b=c"
        outcome = inject(pod("pinned, labelled"), "default", lookup)
        assert outcome.patch == [] and outcome.reason == "InvalidNodeSelector"
    finally:
        del NADS[("default", "pinned")], NADS[("default", "labelled")]
