"""The pod's own devices, asked of the kubelet's podresources/v1 API (as Multus asks)."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from sriovkit.errors import SriovkitError
from sriovkit.kubeapi import podresources_pb2 as pr_pb
from sriovkit.kubeapi import podresources_pb2_grpc as pr_grpc

_TIMEOUT_S = 10.0


class PodResourcesError(SriovkitError, RuntimeError):
    pass


class PodResourcesClient:
    """Construction stores the socket path; each call opens a channel (the kubelet may restart)."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def devices(self, namespace: str, pod: str, resource: str) -> list[str]:
        """The device IDs of `resource` assigned to any container of the pod, in container order."""
        try:
            with grpc.insecure_channel(f"unix:{self.socket_path}") as channel:
                stub = pr_grpc.PodResourcesListerStub(channel)
                try:
                    reply = stub.Get(pr_pb.GetPodResourcesRequest(pod_name=pod, pod_namespace=namespace),
                                     timeout=_TIMEOUT_S)
                    resources = [reply.pod_resources]
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.NOT_FOUND:
                        return []
                    # Unimplemented: Get needs a feature gate before 1.27. Unknown: the kubelet answers
                    # a pod it does not know (yet, e.g. right after its restart) with a plain error,
                    # which is also how it says the gate is off: List says which, without reading text
                    if exc.code() not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN):
                        raise
                    listed = stub.List(pr_pb.ListPodResourcesRequest(), timeout=_TIMEOUT_S)
                    resources = [p for p in listed.pod_resources if p.namespace == namespace and p.name == pod]
        except grpc.RpcError as exc:
            raise PodResourcesError(f"podresources at {self.socket_path}: {exc.code().name}: {exc.details()}") \
                from None
        return _device_ids(resources, resource)


def _device_ids(pods: Iterable[pr_pb.PodResources], resource: str) -> list[str]:
    out: list[str] = []
    for pod in pods:
        for container in pod.containers:
            for devices in container.devices:
                if devices.resource_name == resource:
                    out.extend(d for d in devices.device_ids if d not in out)
    return out


def free_device(assigned: list[str], in_use: Iterable[str]) -> str | None:
    """The first device the kubelet gave the pod that none of its attachments uses yet."""
    used = set(in_use)
    return next((d for d in assigned if d not in used), None)
