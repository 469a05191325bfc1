"""The API server side of the driver, through the official `kubernetes` client (resource.k8s.io/v1):
read a ResourceClaim and patch its status.devices (networkData), list/create/replace/delete this node's
ResourceSlices. Objects are plain dicts (CustomObjectsApi, raw JSON), so a field newer than the
client's models is kept as it is.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from sriovkit.errors import SriovkitError

GROUP = "resource.k8s.io"
VERSION = "v1"
CLAIMS = "resourceclaims"
SLICES = "resourceslices"
_REQUEST_TIMEOUT_S = 30

Obj = dict[str, Any]


class ApiError(SriovkitError, RuntimeError):
    """An API request failed; the message names the request and the server's reason."""


class ConflictError(ApiError):
    """409: the object changed since it was read (read it again and retry)."""


class DraApi(Protocol):
    def get_claim(self, namespace: str, name: str) -> Obj: ...
    def patch_claim_devices_status(self, namespace: str, name: str, resource_version: str,
                                   devices: list[Obj]) -> None: ...
    def list_slices(self, node_name: str, driver: str) -> list[Obj]: ...
    def create_slice(self, body: Obj) -> None: ...
    def replace_slice(self, name: str, body: Obj) -> None: ...
    def delete_slice(self, name: str) -> None: ...


class KubernetesDraApi:
    """`DraApi` over the `kubernetes` package; construction loads the kubeconfig (no requests)."""

    def __init__(self, *, kubeconfig: str | None = None) -> None:
        from kubernetes import client

        from sriovkit.kubeclient import api_client  # the one kubeconfig/in-cluster loader

        self._custom = client.CustomObjectsApi(api_client(kubeconfig))

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = func(*args, _preload_content=False, _request_timeout=_REQUEST_TIMEOUT_S, **kwargs)
        except ApiException as exc:
            error = ConflictError if exc.status == 409 else ApiError
            raise error(f"{what}: {exc.status} {_reason(exc)}") from None
        except OSError as exc:  # connection refused, timeouts (urllib3 errors are OSErrors)
            raise ApiError(f"{what}: {exc}") from None
        return json.loads(resp.data) if resp.data else {}

    def get_claim(self, namespace: str, name: str) -> Obj:
        obj: Obj = self._call(f"get resourceclaim {namespace}/{name}", self._custom.get_namespaced_custom_object,
                              GROUP, VERSION, namespace, CLAIMS, name)
        return obj

    def patch_claim_devices_status(self, namespace: str, name: str, resource_version: str,
                                   devices: list[Obj]) -> None:
        """status.devices replaced whole by a merge patch, only if the claim is still at
        `resource_version` (ConflictError otherwise). A patch, not a PUT of the claim read: a PUT
        re-encodes the allocation's opaque parameters, whose bytes the API server compares, and is
        refused as a change to the immutable status.allocation."""
        self._call(f"patch resourceclaim {namespace}/{name} status.devices",
                   self._custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, CLAIMS, name,
                   {"metadata": {"resourceVersion": resource_version}, "status": {"devices": devices}},
                   _content_type="application/merge-patch+json")

    def list_slices(self, node_name: str, driver: str) -> list[Obj]:
        page = self._call("list resourceslices", self._custom.list_cluster_custom_object, GROUP, VERSION, SLICES,
                          field_selector=f"spec.nodeName={node_name},spec.driver={driver}")
        return list(page.get("items") or [])

    def create_slice(self, body: Obj) -> None:
        self._call(f"create resourceslice {body['metadata']['name']}", self._custom.create_cluster_custom_object,
                   GROUP, VERSION, SLICES, body)

    def replace_slice(self, name: str, body: Obj) -> None:
        self._call(f"replace resourceslice {name}", self._custom.replace_cluster_custom_object,
                   GROUP, VERSION, SLICES, name, body)

    def delete_slice(self, name: str) -> None:
        self._call(f"delete resourceslice {name}", self._custom.delete_cluster_custom_object,
                   GROUP, VERSION, SLICES, name)


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
