"""The kubelet's podresources/v1 API, as a client: the one place that speaks it.

The agent asks it which devices pods hold (provisioning must not remove them), hot-plug which
devices the kubelet gave a pod (as Multus asks), `sriovctl allocations` and the demo what was
assigned to whom. Each call opens its own channel: the kubelet may restart in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from sriovkit.errors import SriovkitError
from sriovkit.kubeapi import podresources_pb2 as pr_pb
from sriovkit.kubeapi import podresources_pb2_grpc as pr_grpc

DEFAULT_TIMEOUT_S = 10.0


class PodResourcesError(SriovkitError, RuntimeError):
    """The kubelet did not answer; `code` and `details` are gRPC's, for callers' own error lines."""

    def __init__(self, socket_path: str, code: str, details: str) -> None:
        super().__init__(f"podresources at {socket_path}: {code}: {details}")
        self.socket_path, self.code, self.details = socket_path, code, details


@dataclass(frozen=True, slots=True)
class Assignment:
    """The devices of one resource the kubelet assigned to one container."""

    namespace: str
    pod: str
    container: str
    resource: str
    device_ids: tuple[str, ...]


class PodResourcesClient:
    """Construction stores the socket path; each call opens a channel."""

    def __init__(self, socket_path: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = str(socket_path)
        self.timeout_s = timeout_s

    def assignments(self) -> list[Assignment]:
        """Every pod's assigned devices (List)."""
        try:
            with grpc.insecure_channel(f"unix:{self.socket_path}") as channel:
                reply = pr_grpc.PodResourcesListerStub(channel).List(pr_pb.ListPodResourcesRequest(),
                                                                       timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return list(_assignments(reply.pod_resources))

    def devices(self, namespace: str, pod: str, resource: str) -> list[str]:
        """The device IDs of `resource` assigned to any container of the pod, in container order:
        Get, or List where the kubelet has no Get (a feature gate before 1.27)."""
        try:
            with grpc.insecure_channel(f"unix:{self.socket_path}") as channel:
                stub = pr_grpc.PodResourcesListerStub(channel)
                try:
                    reply = stub.Get(pr_pb.GetPodResourcesRequest(pod_name=pod, pod_namespace=namespace),
                                     timeout=self.timeout_s)
                    pods = [reply.pod_resources]
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.NOT_FOUND:
                        return []
                    # Unimplemented: Get needs a feature gate before 1.27. Unknown: the kubelet answers
                    # a pod it does not know (yet, e.g. right after its restart) with a plain error,
                    # which is also how it says the gate is off: List says which, without reading text
                    if exc.code() not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN):
                        raise
                    listed = stub.List(pr_pb.ListPodResourcesRequest(), timeout=self.timeout_s)
                    pods = [p for p in listed.pod_resources if p.namespace == namespace and p.name == pod]
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        out: list[str] = []
        for a in _assignments(pods):
            if a.resource == resource:
                out.extend(d for d in a.device_ids if d not in out)
        return out

    def _error(self, exc: grpc.RpcError) -> PodResourcesError:
        return PodResourcesError(self.socket_path, exc.code().name, str(exc.details()))


def _assignments(pods: Iterable[pr_pb.PodResources]) -> Iterator[Assignment]:
    for pod in pods:
        for container in pod.containers:
            for devices in container.devices:
                yield Assignment(pod.namespace, pod.name, container.name, devices.resource_name,
                                 tuple(devices.device_ids))
