"""Resource injector latency: AdmissionReviews answered by `WebhookServer` + `Reviewer` over real
TLS on loopback, as the API server calls it (keep-alive connection), and with a new connection
(TLS handshake) per review. NADs come from an in-memory lookup, so the numbers are the webhook's
own cost (decode, patch, encode, TLS), not the API server's. Prints p50, p99 and max.

    .venv/bin/python bench/injector.py [--reviews 500]
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sriovkit.injector.review import Reviewer
from sriovkit.injector.server import ReloadingTls, WebhookServer

NADS = {("default", f"net{i}"): {
    "metadata": {"annotations": {"k8s.v1.cni.cncf.io/resourceName": f"intel.com/r{i % 2}"}}}
        for i in range(4)}


def review_body() -> bytes:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "web-", "labels": {"app": "web"},
                        "annotations": {"k8s.v1.cni.cncf.io/networks": "net0, net1@n2, net2, net3"}},
           "spec": {"containers": [{"name": "a", "image": "x", "resources": {}}, {"name": "b", "image": "x"}]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": str(uuid.uuid4()), "kind": {"kind": "Pod"}, "operation": "CREATE",
                                   "namespace": "default", "object": pod}}).encode()


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):6.2f} ms  p99 {p99:6.2f} ms  max {ms[-1]:6.2f} ms  (n={len(ms)})"


def post(conn: http.client.HTTPSConnection, body: bytes) -> dict[str, Any]:
    conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    data = reply.read()
    assert reply.status == 200, data
    answer: dict[str, Any] = json.loads(data)
    return answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="injbench") as tmp:
        cert, key = Path(tmp) / "c.crt", Path(tmp) / "c.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=b",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        server = WebhookServer("127.0.0.1:0", ReloadingTls(cert, key), Reviewer(lambda ns, n: NADS.get((ns, n))))
        server.start()
        context = ssl.create_default_context(cafile=str(cert))
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
            assert post(conn, review_body())["response"]["patch"]  # warm up, and it does inject
            kept = []
            for _ in range(args.reviews):
                body = review_body()
                start = time.perf_counter()
                post(conn, body)
                kept.append(time.perf_counter() - start)
            conn.close()
            fresh = []
            for _ in range(max(args.reviews // 5, 10)):
                body = review_body()
                start = time.perf_counter()
                c = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
                post(c, body)
                c.close()
                fresh.append(time.perf_counter() - start)
        finally:
            server.stop()
    print("injector: AdmissionReview of a pod naming 4 networks, 2 containers (TLS 1.3, loopback)")
    print(f"  keep-alive connection   {percentiles(kept)}")
    print(f"  new connection each     {percentiles(fresh)}")


if __name__ == "__main__":
    main()
