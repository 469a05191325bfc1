"""Every manifest under deploy/ and every object the chart renders validates offline against the
Kubernetes API schemas (strict: unknown fields fail) or, for NADs, against our NAD/netconf schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import deploy_validate as validate
import helm_render
import pytest
from deploy_env import CHART, DEPLOY, KUBERNETES_VERSION, MANIFESTS, find, load_objects, manifest_files, render

from sriovkit.cni.netconf import parse_netconf
from sriovkit.resources.config import parse_config_text


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_validates(path: Path) -> None:
    objects = load_objects(path)
    assert objects, f"{path}: no objects"
    problems = [p for i, o in enumerate(objects) for p in validate.object_problems(o, f"{path.name}[{i}]",
                                                                                   KUBERNETES_VERSION)]
    assert problems == []


@pytest.mark.parametrize("all_on", [False, True], ids=["default-values", "all-on-values"])
def test_rendered_chart_validates(all_on: bool) -> None:
    objects = render(all_on=all_on)
    problems = [p for i, o in enumerate(objects)
                for p in validate.object_problems(o, f"{o.get('kind')}[{i}]", KUBERNETES_VERSION)]
    assert problems == []
    kinds = sorted(o["kind"] for o in objects)
    expected = ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "ServiceAccount"]  # RBAC: Events
    on = ["NetworkAttachmentDefinition", "DeviceClass"]  # example NADs, DRA DeviceClasses
    on += ["Deployment", "MutatingWebhookConfiguration", "Service"]  # the resource injector
    assert sorted(set(kinds)) == sorted(expected + (on if all_on else []))


def test_example_nads_cover_kernel_ipam_vlan_and_dpdk() -> None:
    configs = {}
    for path in sorted((DEPLOY / "nad").glob("*.yaml")):
        (nad,) = load_objects(path)
        assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]
        configs[path.stem] = json.loads(nad["spec"]["config"])
    assert configs["kernel-vf-ipam"]["ipam"]["type"] == "host-local"
    assert configs["vlan-tag"]["vlan"] > 0
    assert configs["vlan-trunk"]["vlan"] == 0 and configs["vlan-trunk"]["trust"] == "on"
    assert "ipam" not in configs["dpdk-vfio"]


def _daemonset() -> dict[str, Any]:
    return find(load_objects(MANIFESTS / "daemonset.yaml"), "DaemonSet")


def test_validation_rejects_an_unknown_field_deep_in_the_daemonset() -> None:
    ds = _daemonset()
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["propagation"] = "HostToContainer"
    problems = validate.object_problems(ds, "ds", KUBERNETES_VERSION)
    assert len(problems) == 1 and "containers.0.volumeMounts.0" in problems[0] and "propagation" in problems[0]


def test_validation_rejects_a_mount_without_a_volume() -> None:
    ds = _daemonset()
    ds["spec"]["template"]["spec"]["volumes"] = [
        v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] != "netns"]
    assert validate.object_problems(ds, "ds", KUBERNETES_VERSION) == ["ds: volumeMount 'netns' has no volume"]


def _nad(config: Any) -> dict[str, Any]:
    (nad,) = load_objects(DEPLOY / "nad" / "vlan-tag.yaml")
    nad = copy.deepcopy(nad)
    nad["spec"]["config"] = config if isinstance(config, str) else json.dumps(config)
    return nad


@pytest.mark.parametrize(("config", "complaint"), [
    ('{"cniVersion": "1.0.0", "name": "x", "type": "sriov",', "not JSON"),
    ({"cniVersion": "1.0.0", "name": "x", "type": "bridge"}, "'sriov' was expected"),
    ({"cniVersion": "1.0.0", "name": "x", "type": "sriov", "vlan": 4095}, "4095 is greater than the maximum"),
    ({"cniVersion": "1.0.0", "name": "x", "type": "sriov", "spoofchk": True}, "True is not of type 'string'"),
    ({"cniVersion": "1.0.0", "name": "x", "type": "sriov", "vlanQoS": 3}, "vlanQoS needs vlan"),
    ({"cniVersion": "1.0.0", "name": "x", "type": "sriov", "vlan": 0, "vlanQoS": 3}, "non-zero vlanQoS needs"),
    ({"cniVersion": "1.0.0", "name": "x", "type": "sriov", "vlann": 3}, "'vlann' was unexpected"),
    ({"cniVersion": "1.0.0", "type": "sriov"}, "'name' is a required property"),
    ({"cniVersion": "1.0.0", "name": "x", "type": "sriov", "min_tx_rate": 5, "max_tx_rate": 2}, "min_tx_rate above"),
])
def test_nad_schema_rejects_bad_netconf(config: Any, complaint: str) -> None:
    problems = validate.object_problems(_nad(config), "nad", KUBERNETES_VERSION)
    assert any(complaint in p for p in problems), problems


def test_nad_schema_rejects_wrong_api_version() -> None:
    nad = _nad({"cniVersion": "1.0.0", "name": "x", "type": "sriov"})
    nad["apiVersion"] = "k8s.cni.cncf.io/v1beta1"
    assert any("apiVersion" in p for p in validate.object_problems(nad, "nad", KUBERNETES_VERSION))


def test_configmaps_hold_a_config_json_sriovkit_accepts() -> None:
    for cm in (find(load_objects(MANIFESTS / "configmap.yaml"), "ConfigMap"), find(render(), "ConfigMap")):
        assert cm["metadata"]["name"] == "sriovdp-config" and list(cm["data"]) == ["config.json"]
        resources = parse_config_text(cm["data"]["config.json"], source="sriovdp-config")
        assert len(resources.resources) >= 2


def _granted(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """What the ServiceAccount may do: the rules of every ClusterRole bound to it."""
    account = find(objects, "ServiceAccount")["metadata"]["name"]
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    bound = [b["roleRef"]["name"] for b in objects if b["kind"] == "ClusterRoleBinding"
             if any(s["name"] == account for s in b["subjects"])]
    assert sorted(bound) == sorted(roles)  # no role bound to nothing
    return {(group, resource, verb) for name in bound for r in roles[name]["rules"] for group in r["apiGroups"]
            for resource in r["resources"] for verb in r["verbs"]}


def test_rbac_is_least_privilege() -> None:
    """The agent's calls (Node Events: src/sriovkit/agent/events.py; with hot-plug those of
    src/sriovkit/hotplug/kube.py) and nothing more."""
    events = {("", "events", "create")}
    hotplug = {("", "pods", v) for v in ("list", "watch", "patch")}
    hotplug |= {("k8s.cni.cncf.io", "network-attachment-definitions", v) for v in ("list", "watch")}
    assert _granted(load_objects(MANIFESTS / "rbac.yaml")) == events
    assert _granted(render()) == events
    plain = load_objects(MANIFESTS / "rbac.yaml") + load_objects(MANIFESTS / "hotplug" / "rbac.yaml")
    for objects in (plain, render("hotplug.enabled=true")):
        assert _granted(objects) == events | hotplug


def test_every_example_nad_is_accepted_by_the_sriov_cni() -> None:
    nads = [o for p in sorted((DEPLOY / "nad").glob("*.yaml")) for o in load_objects(p)]
    nads += [o for o in render(all_on=True) if o["kind"] == "NetworkAttachmentDefinition"]
    assert len(nads) == 8
    for nad in nads:
        # as Multus hands it over: the NAD's config plus the allocated VF
        conf = parse_netconf({**json.loads(nad["spec"]["config"]), "deviceID": "0000:3c:00.2"})
        assert conf.name == nad["metadata"]["name"]


def test_a_case_varied_config_passes_the_chart_schema_and_reads_as_the_original(tmp_path: Path) -> None:
    """Upstream reads config.json with Go's encoding/json (keys match case-insensitively, with Go's
    folds: U+017F is s), and so does the agent: the chart's schema accepts such a copy, and still
    names resourceName when no spelling of it is there."""
    original = [{"resourceName": "vf", "selectors": {"vendors": ["8086"], "pfNames": ["ens1#0-1"]}}]
    varied = [{"RESOURCENAME": "vf", "\u017felectors": {"Vendors": ["8086"], "PfNames": ["ens1#0-1"]}}]
    configs = []
    for items in (original, varied):
        values = tmp_path / "values.json"
        values.write_text(json.dumps({"config": {"resourceList": items}}))
        cm = find([o for _, o in helm_render.render_chart(CHART, values_files=(values,))], "ConfigMap")
        configs.append(parse_config_text(cm["data"]["config.json"], source="sriovdp-config"))
    assert configs[0] == configs[1]
    values.write_text(json.dumps({"config": {"resourceList": [{"selectors": {}}]}}))
    missing = r"config\.resourceList\.0: 'resourceName' is a required property"
    with pytest.raises(helm_render.TemplateError, match=missing):
        helm_render.render_chart(CHART, values_files=(values,))
