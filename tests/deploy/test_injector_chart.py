"""The chart's resource injector: off by default; on, a Deployment running `sriovctl injector` with
flags it accepts, a Service the MutatingWebhookConfiguration calls, and RBAC for exactly its calls
(src/sriovkit/injector/kube.py: get NADs, create Events)."""

from __future__ import annotations

from typing import Any

from deploy_env import find, render

from sriovkit.cli import build_parser

INJECTOR_KINDS = {"Deployment", "Service", "MutatingWebhookConfiguration"}


def _injector_objects(*sets: str, all_on: bool = False) -> list[dict[str, Any]]:
    return [o for o in render(*sets, all_on=all_on) if o["metadata"]["name"].endswith("-injector")]


def test_off_by_default() -> None:
    assert not INJECTOR_KINDS & {o["kind"] for o in render()}
    assert _injector_objects() == []


def test_deployment_runs_the_injector_with_flags_it_accepts() -> None:
    objects = _injector_objects("injector.enabled=true", "injector.honorResources=true", "injector.port=9443")
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])
    assert args.port == 9443 and args.honor_resources
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["tls"]
    assert args.tls_cert_file == f"{mount}/tls.crt" and args.tls_key_file == f"{mount}/tls.key"
    secret = {v["name"]: v for v in pod["volumes"]}["tls"]["secret"]["secretName"]
    assert secret == "sriovkit-injector-tls"
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    assert pod["serviceAccountName"] == find(objects, "ServiceAccount")["metadata"]["name"]


def test_webhook_calls_the_service_for_pod_creation_and_fails_open() -> None:
    objects = _injector_objects(all_on=True)
    service = find(objects, "Service")
    (webhook,) = find(objects, "MutatingWebhookConfiguration")["webhooks"]
    target = webhook["clientConfig"]["service"]
    assert (target["name"], target["namespace"]) == (service["metadata"]["name"], service["metadata"]["namespace"])
    assert target["port"] == service["spec"]["ports"][0]["port"] and target["path"] == "/mutate"
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert webhook["failurePolicy"] == "Ignore" and webhook["clientConfig"]["caBundle"]
    assert webhook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"], "scope": "Namespaced"}]
    assert "v1" in webhook["admissionReviewVersions"]


def test_rbac_is_exactly_the_injectors_calls() -> None:
    objects = _injector_objects("injector.enabled=true")
    rules = find(objects, "ClusterRole")["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("k8s.cni.cncf.io", "network-attachment-definitions", "get"), ("", "events", "create")}
    binding = find(objects, "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == find(objects, "ServiceAccount")["metadata"]["name"]
    assert binding["roleRef"]["name"] == find(objects, "ClusterRole")["metadata"]["name"]
