"""Issue 16 part 5 on the real node: with the resource injector registered as the API server's
mutating webhook, a pod that only names its network gets the NAD's resource request, the kubelet
allocates it a VF and the CNI attaches it; a pod naming a NAD that does not exist is admitted
unchanged, with a warning Event saying which."""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.cluster import RESOURCE, Cluster
from tests.kube.helpers import Kube, wait_for
from tests.kube.test_flow import vlan_nad
from tests.support.endpoints import free_port


@pytest.fixture
def injector(kube: Kube, cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """`sriovctl injector` on the node, registered for this test's namespace only (failurePolicy
    Fail, so a webhook that does not answer fails the test instead of being skipped silently)."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=injector",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sriovkit", "injector", "--tls-cert-file", str(cert),
                             "--tls-private-key-file", str(key), "--address", f"127.0.0.1:{port}",
                             "--kubeconfig", str(cluster.kubeconfig)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    context = ssl.create_default_context(cafile=str(cert))

    def serving() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5, context=context) as reply:
                return reply.status == 200
        except OSError:
            return False
    wait_for("the injector serving", serving, timeout=60)
    name = f"sriovkit-injector-{secrets.token_hex(3)}"
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "network-resources-injector.sriovkit.io", "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun", "failurePolicy": "Fail", "timeoutSeconds": 10,
            "clientConfig": {"url": f"https://127.0.0.1:{port}/mutate",
                             "caBundle": base64.b64encode(cert.read_bytes()).decode()},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": kube.namespace}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                       "scope": "Namespaced"}]}]}
    kube.run("apply", "-f", "-", stdin=json.dumps(webhook))
    try:
        yield name
    finally:
        kube.run("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found", check=False)
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err


def test_a_pod_that_only_names_the_network_gets_its_vf(kube: Kube, cluster: Cluster, injector: str) -> None:
    vlan_nad(kube, name="sriov-inj", vlan=21)
    kube.pod("named-only", networks="sriov-inj")  # no resources of its own
    spec = kube.get("pod", "named-only")["spec"]["containers"][0]
    assert spec["resources"]["requests"][RESOURCE] == "1" and spec["resources"]["limits"][RESOURCE] == "1"
    assert {"name": "podnetinfo", "readOnly": True, "mountPath": "/etc/podnetinfo"} in spec["volumeMounts"]
    kube.wait_running("named-only", timeout=240)
    (pci,) = kube.pod_devices("named-only")
    assert "net1" in kube.pod_links("named-only")
    assert pci


def test_a_missing_nad_admits_the_pod_unchanged_with_an_event(kube: Kube, injector: str) -> None:
    kube.pod("nad-missing", networks="no-such-network")
    spec = kube.get("pod", "nad-missing")["spec"]["containers"][0]
    assert RESOURCE not in (spec.get("resources") or {}).get("requests", {})

    def warned() -> str | None:
        return next((e for e in kube.events("nad-missing") if e.startswith("NADNotFound:")), None)
    event = wait_for("the injector's NADNotFound event", warned, timeout=60)
    assert f"{kube.namespace}/no-such-network" in event
