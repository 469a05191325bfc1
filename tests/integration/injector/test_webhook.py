"""`sriovctl injector` over a real TLS socket: AdmissionReviews in, JSON Patches out, NADs read and
Events created through the real `kubernetes` client against the in-process API server stand-in."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sriovkit.kubesim.apiserver import NADS, FakeKubeApi
from tests.support.endpoints import free_port

NET = "intel.com/sriov_net"


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class Injector:
    def __init__(self, port: int, ca: Path, proc: subprocess.Popen[str]) -> None:
        self.port, self.ca, self.proc = port, ca, proc

    def context(self, ca: Path | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(ca or self.ca))

    def post(self, body: bytes, content_type: str = "application/json",
             ca: Path | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}/mutate", data=body, method="POST",
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context(ca)) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def review(self, pod: dict[str, Any], namespace: str = "default", api_version: str = "admission.k8s.io/v1"
               ) -> dict[str, Any]:
        uid = str(uuid.uuid4())
        review = {"apiVersion": api_version, "kind": "AdmissionReview", "request": {
            "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": namespace,
            "operation": "CREATE", "object": pod}}
        status, answer = self.post(json.dumps(review).encode())
        assert status == 200, answer
        assert answer["apiVersion"] == api_version and answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == uid and answer["response"]["allowed"] is True
        response: dict[str, Any] = answer["response"]
        return response


def nad(namespace: str, name: str, resource: str) -> dict[str, Any]:
    return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"namespace": namespace, "name": name,
                         "annotations": {"k8s.v1.cni.cncf.io/resourceName": resource}},
            "spec": {"config": json.dumps({"cniVersion": "1.0.0", "name": name, "type": "sriov"})}}


def pod(networks: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": networks}, **meta},
            "spec": {"containers": [{"name": "app", "image": "busybox", "resources": {}}]}}


@pytest.fixture
def api() -> Iterator[FakeKubeApi]:
    fake = FakeKubeApi()
    fake.start()
    fake.put(NADS, nad("default", "sriov-net", NET))
    fake.put(NADS, nad("team-b", "sriov-net", "intel.com/sriov_b"))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def injector(api: FakeKubeApi, tmp_path: Path) -> Iterator[Injector]:
    cert, key = make_cert(tmp_path, "injector")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sriovkit", "injector", "--tls-cert-file", str(cert), "--tls-private-key-file",
         str(key), "--address", f"127.0.0.1:{port}",
         "--kubeconfig", str(api.write_kubeconfig(tmp_path / "kubeconfig"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    served = Injector(port, cert, proc)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5,
                                        context=served.context()) as reply:
                assert reply.status == 200
                break
        except urllib.error.URLError:
            assert proc.poll() is None, proc.communicate()[1]
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err


def _patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


def test_a_pod_naming_networks_gets_their_resources_and_podnetinfo(injector: Injector) -> None:
    response = injector.review(pod("sriov-net, sriov-net@net2, team-b/sriov-net", name="web"))
    patch = _patch(response)
    assert {"op": "add", "path": "/spec/containers/0/resources/requests/intel.com~1sriov_net", "value": "2"} in patch
    assert {"op": "add", "path": "/spec/containers/0/resources/limits/intel.com~1sriov_b", "value": "1"} in patch
    assert {"op": "add", "path": "/spec/containers/0/volumeMounts/-",
            "value": {"name": "podnetinfo", "readOnly": True, "mountPath": "/etc/podnetinfo"}} in patch
    assert "warnings" not in response


def test_v1beta1_reviews_and_json_annotations_are_answered_alike(injector: Injector) -> None:
    networks = json.dumps([{"name": "sriov-net", "interface": "net1"}, {"name": "sriov-net", "namespace": "team-b"}])
    response = injector.review(pod(networks, generateName="web-"), api_version="admission.k8s.io/v1beta1")
    paths = {op["path"]: op.get("value") for op in _patch(response)}
    assert paths["/spec/containers/0/resources/requests/intel.com~1sriov_net"] == "1"
    assert paths["/spec/containers/0/resources/requests/intel.com~1sriov_b"] == "1"


def test_a_missing_nad_admits_unchanged_with_an_event(injector: Injector, api: FakeKubeApi) -> None:
    response = injector.review(pod("sriov-net,absent", generateName="web-"), namespace="default")
    assert "patch" not in response
    assert "default/absent" in response["warnings"][0]
    event = api.wait_for(lambda fake: fake.events and fake.events[-1])
    assert event["reason"] == "NADNotFound" and event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Pod" and event["involvedObject"]["namespace"] == "default"
    assert event["involvedObject"]["name"] == "web-" and "default/absent" in event["message"]


def test_pods_without_networks_and_other_objects_pass_untouched(injector: Injector, api: FakeKubeApi) -> None:
    plain = pod("sriov-net")
    plain["metadata"]["annotations"] = {}
    assert "patch" not in injector.review(plain)
    assert api.events == []


@pytest.mark.parametrize(("body", "content_type", "code"), [
    (b"{not json", "application/json", 400),
    (b'{"kind": "Pod"}', "application/json", 400),
    (b'{"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {}}', "application/json", 400),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}', "text/plain", 415),
])
def test_bad_requests_get_a_clear_status(injector: Injector, body: bytes, content_type: str, code: int) -> None:
    status, text = injector.post(body, content_type)
    assert status == code and text.strip()


def test_tls_is_required_and_a_rotated_certificate_is_served(injector: Injector, tmp_path: Path) -> None:
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):  # plain HTTP: no answer
        urllib.request.urlopen(f"http://127.0.0.1:{injector.port}/healthz", timeout=5)
    new_cert, new_key = make_cert(tmp_path, "rotated")
    # written in place, as a projected Secret is updated (cert first, then key: a half-rotated pair keeps the old)
    (tmp_path / "injector.crt").write_bytes(new_cert.read_bytes())
    (tmp_path / "injector.key").write_bytes(new_key.read_bytes())
    status, answer = injector.post(json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": "default",
                    "object": pod("sriov-net")}}).encode(), ca=new_cert)
    assert status == 200 and answer["response"]["allowed"] is True


@pytest.mark.parametrize("flags", [["--address", "nowhere"], ["--port", "70000"],
                                   ["--network-resource-name-keys", ","]])
def test_bad_flags_are_one_line(tmp_path: Path, flags: list[str]) -> None:
    cert, key = make_cert(tmp_path, "c")
    proc = subprocess.run([sys.executable, "-m", "sriovkit", "injector", "--tls-cert-file", str(cert),
                           "--tls-private-key-file", str(key), *flags], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and flags[0] in proc.stderr


def test_bad_tls_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("not a certificate")
    proc = subprocess.run([sys.executable, "-m", "sriovkit", "injector", "--tls-cert-file", str(tmp_path / "c.pem"),
                           "--tls-private-key-file", str(tmp_path / "c.pem"), "--port", "1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--tls-cert-file" in proc.stderr


def test_a_port_in_use_is_one_line(api: FakeKubeApi, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "c")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "sriovkit", "injector", "--tls-cert-file", str(cert),
                               "--tls-private-key-file", str(key), "--address", f"127.0.0.1:{port}",
                               "--kubeconfig", str(api.write_kubeconfig(tmp_path / "kubeconfig"))],
                              capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"sriovctl: --bind-address 127.0.0.1 --port {port}: cannot listen: Address already in use"]


def test_an_unreadable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "c")
    (tmp_path / "kubeconfig").write_text("clusters: [")
    proc = subprocess.run([sys.executable, "-m", "sriovkit", "injector", "--tls-cert-file", str(cert),
                           "--tls-private-key-file", str(key), "--kubeconfig", str(tmp_path / "kubeconfig")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()  # the YAML parser's message spans lines
    assert line.startswith(f"sriovctl: --kubeconfig {tmp_path / 'kubeconfig'}: ") and "column" in line
