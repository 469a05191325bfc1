"""The Kubernetes API, through the official `kubernetes` client: the pods on this node and the
NADs (list, then watch from the list's resourceVersion), pod annotation patches, Events.

`Informer` keeps a cache of one kind of object current and calls back on every change;
it re-lists when the API says the watch's resourceVersion is too old (410 Gone).
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from sriovkit.errors import SriovkitError
from sriovkit.kubeclient import api_client
from sriovkit.multus import NAD_GROUP, NAD_PLURAL, NAD_VERSION

if TYPE_CHECKING:  # the `kube` extra
    from kubernetes.watch import Watch

log = logging.getLogger(__name__)

Obj = dict[str, Any]
COMPONENT = "sriovkit-hotplug"
_GONE = 410
_LIST_CHUNK = 500
_REQUEST_TIMEOUT_S = 30  # lists, patches, events: an API server that hangs must not hang the controller


class ClusterApi(Protocol):
    """What the controller needs of the API server."""

    def list_pods(self) -> tuple[list[Obj], str]: ...
    def watch_pods(self, resource_version: str, timeout_s: int) -> Iterator[tuple[str, Obj]]: ...
    def list_nads(self) -> tuple[list[Obj], str]: ...
    def watch_nads(self, resource_version: str, timeout_s: int) -> Iterator[tuple[str, Obj]]: ...
    def patch_pod_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None: ...
    def create_event(self, pod: Obj, event_type: str, reason: str, message: str) -> None: ...
    def stop(self) -> None: ...


class Expired(SriovkitError):
    """The watch's resourceVersion is too old: list again."""


class KubernetesApi:
    """`ClusterApi` over the `kubernetes` package. Construction loads the kubeconfig (no requests)."""

    def __init__(self, node_name: str, *, kubeconfig: str | None = None) -> None:
        from kubernetes import client

        self.node_name = node_name
        self._api_client = api_client(kubeconfig)
        self._core = client.CoreV1Api(self._api_client)
        self._custom = client.CustomObjectsApi(self._api_client)
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()

    # -- pods ------------------------------------------------------------------------------
    def list_pods(self) -> tuple[list[Obj], str]:
        return self._list(self._core.list_pod_for_all_namespaces, field_selector=self._on_node())

    def watch_pods(self, resource_version: str, timeout_s: int) -> Iterator[tuple[str, Obj]]:
        return self._watch(self._core.list_pod_for_all_namespaces, resource_version, timeout_s,
                           field_selector=self._on_node())

    def _on_node(self) -> str:
        return f"spec.nodeName={self.node_name}"

    # -- NADs ------------------------------------------------------------------------------
    def list_nads(self) -> tuple[list[Obj], str]:
        return self._list(self._custom.list_cluster_custom_object, NAD_GROUP, NAD_VERSION, NAD_PLURAL)

    def watch_nads(self, resource_version: str, timeout_s: int) -> Iterator[tuple[str, Obj]]:
        return self._watch(self._custom.list_cluster_custom_object, resource_version, timeout_s,
                           NAD_GROUP, NAD_VERSION, NAD_PLURAL)

    # -- writes ----------------------------------------------------------------------------
    def patch_pod_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        # merge patch: the client's default content type for a dict body is json-patch, which it is not
        self._core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": dict(annotations)}},
                                        _content_type="application/merge-patch+json",
                                        _request_timeout=_REQUEST_TIMEOUT_S)

    def create_event(self, pod: Obj, event_type: str, reason: str, message: str) -> None:
        # the client sends a dict body as it is (its CoreV1Event model is only one way to build one)
        self._core.create_namespaced_event(pod["metadata"]["namespace"],
                                           cast(Any, event_body(pod, event_type, reason, message, self.node_name)),
                                           _request_timeout=_REQUEST_TIMEOUT_S)

    def stop(self) -> None:
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.stop()

    # -- list and watch --------------------------------------------------------------------
    def _list(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[list[Obj], str]:
        items: list[Obj] = []
        token: str | None = None
        while True:
            resp = func(*args, limit=_LIST_CHUNK, _continue=token, _preload_content=False,
                        _request_timeout=_REQUEST_TIMEOUT_S, **kwargs)
            page = json.loads(resp.data)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion", ""))

    def _watch(self, func: Callable[..., Any], resource_version: str, timeout_s: int, *args: Any,
               **kwargs: Any) -> Iterator[tuple[str, Obj]]:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        w = watch.Watch()
        with self._lock:
            self._watches.add(w)
        try:
            for event in w.stream(func, *args, resource_version=resource_version, timeout_seconds=timeout_s,
                                  allow_watch_bookmarks=True, _request_timeout=(10, timeout_s + 30), **kwargs):
                yield str(event["type"]), event["raw_object"]
        except ApiException as exc:
            if exc.status == _GONE:
                raise Expired(str(exc.reason)) from None
            raise
        finally:
            with self._lock:
                self._watches.discard(w)


def event_body(pod: Obj, event_type: str, reason: str, message: str, node: str) -> Obj:
    meta = pod["metadata"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": meta["namespace"],
                           "name": meta["name"], "uid": meta.get("uid", "")},
        "type": event_type, "reason": reason, "message": message[:1024],
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT, "reportingInstance": node,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Informer:
    """List, then watch from the list's resourceVersion, forever (until `stop`), keeping `cache`
    (key -> object) current and calling `on_change(key, object or None)` for each change."""

    def __init__(self, kind: str, list_fn: Callable[[], tuple[list[Obj], str]],
                 watch_fn: Callable[[str, int], Iterator[tuple[str, Obj]]],
                 on_change: Callable[[str, Obj | None], None], *, key: Callable[[Mapping[str, Any]], str] = object_key,
                 watch_timeout_s: int = 300, retry_s: float = 1.0, max_retry_s: float = 30.0) -> None:
        self.kind = kind
        self._list, self._watch, self._on_change, self._key = list_fn, watch_fn, on_change, key
        self.watch_timeout_s, self.retry_s, self.max_retry_s = watch_timeout_s, retry_s, max_retry_s
        self.cache: dict[str, Obj] = {}
        self.lock = threading.Lock()  # guards `cache`: the worker reads while this thread writes
        self.synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, key: str) -> Obj | None:
        with self.lock:
            return self.cache.get(key)

    def known(self) -> list[str]:
        with self.lock:
            return list(self.cache)

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.kind}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Stop after the current request; the owner then breaks the open watch (`ClusterApi.stop`)."""
        self._stopping.set()

    def join(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        pause = self.retry_s
        while not self._stopping.is_set():
            try:
                version = self._relist()
                pause = self.retry_s
                while not self._stopping.is_set():
                    version = self._follow(version)
            except Expired as exc:
                log.info("watch %s expired (%s): listing again", self.kind, exc)
            except Exception as exc:  # the API may be away or refuse us: list again, less often each time
                if self._stopping.is_set():
                    return
                log.warning("list/watch %s failed: %s: %s; again in %.0f s", self.kind, type(exc).__name__, exc,
                            pause)
                self._stopping.wait(pause)
                pause = min(pause * 2, self.max_retry_s)

    def _relist(self) -> str:
        items, version = self._list()
        fresh = {self._key(o): o for o in items}
        with self.lock:
            gone = set(self.cache) - set(fresh)
            changed = [k for k, o in fresh.items() if k not in self.cache or _version(self.cache[k]) != _version(o)]
            self.cache = dict(fresh)
        for key in gone:
            self._on_change(key, None)
        for key in changed:
            self._on_change(key, fresh[key])
        self.synced.set()
        return version

    def _follow(self, version: str) -> str:
        for event_type, obj in self._watch(version, self.watch_timeout_s):
            if self._stopping.is_set():
                break
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if event_type == "BOOKMARK":
                continue
            key = self._key(obj)
            with self.lock:
                if event_type == "DELETED":
                    self.cache.pop(key, None)
                else:
                    self.cache[key] = obj
            self._on_change(key, None if event_type == "DELETED" else obj)
        return version


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))
