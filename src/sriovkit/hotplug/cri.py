"""The container runtime's CRI API (runtime.v1 over its unix socket): a pod's sandbox and netns.

The stubs are generated from `sriovkit/kubeapi/cri.proto`, the subset of runtime.v1 used here
(upstream names and field numbers, so any CRI runtime understands it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from sriovkit import gojson
from sriovkit.errors import SriovkitError
from sriovkit.kubeapi import cri_pb2 as pb
from sriovkit.kubeapi import cri_pb2_grpc as pb_grpc

_TIMEOUT_S = 10.0


class CriError(SriovkitError, RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Sandbox:
    id: str
    netns: str  # "" when the sandbox shares the host's network namespace


class CriClient:
    """Construction stores the endpoint; `sandbox()` asks the runtime each time (no cache to go stale)."""

    def __init__(self, socket_path: str) -> None:
        self.endpoint = socket_path if "://" in socket_path else f"unix://{socket_path}"

    def sandbox(self, uid: str, namespace: str, name: str) -> Sandbox | None:
        """The pod's ready sandbox (the newest, if a restart left two) and its network namespace."""
        try:
            with grpc.insecure_channel(self.endpoint) as channel:
                runtime = pb_grpc.RuntimeServiceStub(channel)
                ready = pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))
                items = runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=ready), timeout=_TIMEOUT_S).items
                mine = [s for s in items if _is_pod(s.metadata, uid, namespace, name)]
                if not mine:
                    return None
                newest = max(mine, key=lambda s: s.created_at)
                status = runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=newest.id, verbose=True),
                                                  timeout=_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise CriError(f"CRI at {self.endpoint}: {exc.code().name}: {exc.details()}") from None
        return Sandbox(newest.id, netns_path(dict(status.info), pod=f"{namespace}/{name}"))

    def sandbox_ids(self) -> set[str]:
        """The IDs of every sandbox the runtime knows, in any state: a NOTREADY one still gets its
        DEL from the kubelet (StopPodSandbox) and is not forgotten until it is removed."""
        try:
            with grpc.insecure_channel(self.endpoint) as channel:
                runtime = pb_grpc.RuntimeServiceStub(channel)
                items = runtime.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=_TIMEOUT_S).items
        except grpc.RpcError as exc:
            raise CriError(f"CRI at {self.endpoint}: {exc.code().name}: {exc.details()}") from None
        return {item.id for item in items}


def _is_pod(metadata: Any, uid: str, namespace: str, name: str) -> bool:
    # the kubelet puts the pod's UID in the sandbox metadata; match on names only when it has none
    if metadata.uid:
        return bool(metadata.uid == uid)
    return bool(metadata.namespace == namespace and metadata.name == name)


def netns_path(info: dict[str, str], *, pod: str) -> str:
    """The network namespace path in PodSandboxStatus' verbose info (containerd and CRI-O put the
    OCI runtime spec there)."""
    raw = info.get("info")
    if not raw:
        raise CriError(f"pod {pod}: the runtime's sandbox status has no verbose info")
    try:
        tree = gojson.plain(gojson.parse(raw).value)
    except gojson.JsonError:
        tree = None
    if not isinstance(tree, dict):
        raise CriError(f"pod {pod}: the runtime's sandbox info is not JSON")
    spec = tree.get("runtimeSpec") or {}
    for namespace in (spec.get("linux") or {}).get("namespaces") or []:
        if namespace.get("type") == "network":
            return str(namespace.get("path") or "")
    return ""
