"""Pod start latency on the real node: the same pod with an SR-IOV network (a VF from the kubelet,
Multus delegating to our `sriov` CNI, host-local IPAM) and without one (cluster network only).

    python bench/kube_pod_latency.py [--pods 20] [--state DIR]

Each pod is created, timed from the API server accepting it to the watch reporting it Ready, and
deleted (waiting until it is gone) before the next, so each runs alone on the node and the VF
pool is never the limit. Uses a cluster already up at --state (./dev kube up), or brings one up
and down. Prints p50/p90 of both and the difference: what our stack adds to a pod's start.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, config, watch

from tests.kube.cluster import DEFAULT_STATE, PAUSE_IMAGE, RESOURCE, Cluster

NS = "sriovkit-bench"


def pod_body(name: str, sriov: bool) -> dict:
    body: dict = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                  "spec": {"terminationGracePeriodSeconds": 0,
                           "containers": [{"name": "main", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}]}}
    if sriov:
        body["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": "bench-sriov"}
        body["spec"]["containers"][0]["resources"] = {"requests": {RESOURCE: "1"}, "limits": {RESOURCE: "1"}}
    return body


def ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def start_latency(core: client.CoreV1Api, name: str, sriov: bool) -> float:
    w = watch.Watch()
    start = time.monotonic()
    core.create_namespaced_pod(NS, pod_body(name, sriov))
    try:
        for event in w.stream(core.list_namespaced_pod, NS, field_selector=f"metadata.name={name}",
                              timeout_seconds=120):
            if ready(event["object"]):
                return time.monotonic() - start
        raise RuntimeError(f"pod {name} not Ready within 120 s")
    finally:
        w.stop()
        core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not core.list_namespaced_pod(NS, field_selector=f"metadata.name={name}").items:
                break
            time.sleep(0.2)


def quantiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=10, method="inclusive")
    return statistics.median(values), q[8]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE)
    args = parser.parse_args()
    cluster = Cluster(args.state)
    ours = not cluster.healthy()
    if ours:
        cluster.up()
    try:
        api = config.new_client_from_config(str(cluster.kubeconfig))
        core = client.CoreV1Api(api)
        cluster.kubectl("create", "namespace", NS)
        nad = {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
               "metadata": {"name": "bench-sriov", "namespace": NS, "annotations": {
                   "k8s.v1.cni.cncf.io/resourceName": RESOURCE}},
               "spec": {"config": json.dumps({"cniVersion": "1.0.0", "name": "bench-sriov", "type": "sriov",
                                              "ipam": {"type": "host-local", "subnet": "10.58.0.0/24"}})}}
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(nad))
        results: dict[str, list[float]] = {"without": [], "with": []}
        for n in range(args.pods):
            for kind in ("without", "with"):  # interleaved: drift affects both alike
                results[kind].append(start_latency(core, f"p-{kind}-{n}", kind == "with"))
        for kind, values in results.items():
            p50, p90 = quantiles(values)
            print(f"pod start {kind:7s} an SR-IOV network: p50 {p50 * 1000:7.0f} ms  p90 {p90 * 1000:7.0f} ms"
                  f"  ({len(values)} pods)")
        added = statistics.median(results["with"]) - statistics.median(results["without"])
        print(f"added by the SR-IOV network (p50 difference): {added * 1000:.0f} ms")
    finally:
        cluster.kubectl("delete", "namespace", NS, "--wait=true", timeout=200)
        if ours:
            cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
