"""The injector's calls to the API server, through the `kubernetes` client: get one NAD, create
Events about pods. (RBAC: network-attachment-definitions get, events create.)"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, cast

from sriovkit.errors import SriovkitError
from sriovkit.injector.patch import Obj, pod_name
from sriovkit.multus import NAD_GROUP, NAD_PLURAL, NAD_VERSION

if TYPE_CHECKING:  # the `kube` extra
    from kubernetes.client import ApiClient

COMPONENT = "sriovkit-injector"
_NOT_FOUND = 404
_REQUEST_TIMEOUT_S = 5  # the API server waits for our answer (the webhook's timeoutSeconds)


class NadUnreadable(SriovkitError):
    """The API server answered a NAD lookup with an error other than 404 (the message: status, reason)."""


class NadReader:
    def __init__(self, api_client: ApiClient) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)

    def __call__(self, namespace: str, name: str) -> Obj | None:
        from kubernetes.client.exceptions import ApiException

        try:
            # the custom-objects API answers the object's JSON, decoded: typed `object` by the client
            nad = cast(Obj, self._custom.get_namespaced_custom_object(
                NAD_GROUP, NAD_VERSION, namespace, NAD_PLURAL, name, _request_timeout=_REQUEST_TIMEOUT_S))
        except ApiException as exc:
            if exc.status == _NOT_FOUND:
                return None
            raise NadUnreadable(f"{exc.status} {exc.reason}") from None
        return nad


def pod_event_body(pod: Obj, namespace: str, reason: str, message: str) -> Obj:
    """A Warning about a pod being created: it may have only a generateName yet, and no uid."""
    meta = pod.get("metadata") or {}
    name = pod_name(pod).rstrip("*") or "pod"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": name}
    if meta.get("uid"):
        involved["uid"] = meta["uid"]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{name.rstrip('-.')}.", "namespace": namespace},
        "involvedObject": involved, "type": "Warning", "reason": reason, "message": message[:1024],
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
