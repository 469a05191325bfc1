"""An API server stand-in: an in-process HTTP server on loopback speaking the part of the
Kubernetes REST API that sriovkit's components use, so they run unchanged through the real
`kubernetes` client where no cluster exists (tests, `sriovctl demo`).

For the hot-plug controller and the resource injector: list and watch of pods (with
`fieldSelector=spec.nodeName=...`) and of NetworkAttachmentDefinitions (and get of one NAD, as the
injector reads it), with resourceVersions, `limit`/`continue` chunks, chunked watch
streams, BOOKMARKs and `410 Expired` once history is compacted; JSON merge and strategic merge
patches of pods; Event creation. For the DRA driver: resource.k8s.io/v1 ResourceSlices (list by
`spec.nodeName` and `spec.driver`, create, replace with resourceVersion conflicts, delete) and
ResourceClaims (get). The owner of the process puts and reads objects directly (`put`, `get`).
It is a stand-in, not a server: no authentication, no admission, loopback only.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

Obj = dict[str, Any]
PODS = "pods"
NADS = "network-attachment-definitions"
SLICES = "resourceslices"
CLAIMS = "resourceclaims"
_NAD_PREFIX = "/apis/k8s.cni.cncf.io/v1"
_DRA_PREFIX = "/apis/resource.k8s.io/v1"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKubeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.history: list[tuple[int, str, str, Obj]] = []  # rv, kind, event type, object
        self.compacted = 0  # watches from a resourceVersion below this get 410
        self.generation = 0  # bumped by `compact`: open watches end with 410, as after an API server restart
        self.rv = 100
        self.events: list[Obj] = []
        self.patches: list[tuple[str, str, str, Obj]] = []  # namespace, name, content type, body
        self.requests: list[str] = []
        self.open_watches: dict[str, int] = {PODS: 0, NADS: 0, SLICES: 0}
        self.fail_next: dict[str, int] = {}  # "METHOD kind" -> how many requests to answer 500
        self.cond = threading.Condition()
        self.stopping = False
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        api = self

        class Handler(_Handler):
            fake = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True).start()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "agent", "user": {"token": "test-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}]}))
        return path

    # -- the test's side -----------------------------------------------------------------------
    def put(self, kind: str, obj: Obj) -> Obj:
        """Create or replace (keeping the UID) an object; returns the stored copy."""
        with self.cond:
            meta = obj.setdefault("metadata", {})
            key = (kind, meta.get("namespace", ""), meta["name"])
            old = self.objects.get(key)
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            self._store(kind, key, obj, "MODIFIED" if old else "ADDED")
            return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self.cond:
            obj = self.objects.pop((kind, namespace, name))
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append((self.rv, kind, "DELETED", copy.deepcopy(obj)))
            self.cond.notify_all()

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        with self.cond:
            return copy.deepcopy(self.objects[(kind, namespace, name)])

    def compact(self) -> None:
        """Forget the change history, as etcd compaction does, and end open watches with 410 Expired
        (as an API server restarting with a newer watch cache answers them)."""
        with self.cond:
            self.compacted = self.rv + 1
            self.generation += 1
            self.history.clear()
            self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cond:
                value = predicate(self)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {getattr(predicate, '__name__', predicate)}")

    # -- the server's side ---------------------------------------------------------------------
    def _store(self, kind: str, key: tuple[str, str, str], obj: Obj, event_type: str) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        obj["metadata"].setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self.objects[key] = copy.deepcopy(obj)
        self.history.append((self.rv, kind, event_type, copy.deepcopy(obj)))
        self.cond.notify_all()

    def listed(self, kind: str, node: str | None) -> list[Obj]:
        return [copy.deepcopy(o) for (k, _, _), o in sorted(self.objects.items()) if k == kind and _on(o, node)]

    def changes(self, kind: str, since: int, node: str | None, timeout: float) -> Iterator[Obj | None]:
        """Watch events after `since`; None while idle (the handler sends nothing then)."""
        deadline = time.monotonic() + timeout
        seen = since
        with self.cond:
            generation = self.generation
            self.open_watches[kind] += 1
        try:
            yield from self._follow(kind, seen, generation, node, deadline)
        finally:
            with self.cond:
                self.open_watches[kind] -= 1

    def _follow(self, kind: str, seen: int, generation: int, node: str | None,
                deadline: float) -> Iterator[Obj | None]:
        while time.monotonic() < deadline:
            with self.cond:
                if self.stopping:
                    return
                expired = seen < self.compacted - 1 or generation != self.generation
                fresh = [(rv, t, o) for rv, k, t, o in self.history if rv > seen and k == kind]
                if not fresh and not expired:
                    self.cond.wait(0.2)
            if expired:
                yield {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                   "message": f"too old resource version: {seen}",
                                                   "reason": "Expired", "code": 410}}
                return
            for rv, event_type, obj in fresh:
                seen = rv
                if _on(obj, node):
                    yield {"type": event_type, "object": obj}
            yield None


def rbac_verb(request: str) -> tuple[str, str, str]:
    """("GET /api/v1/pods watch") -> (API group, resource, RBAC verb)."""
    method, path, *watch = request.split()
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource, named = rest[0], len(rest) > 1
    verbs = {"GET": "get" if named else ("watch" if watch else "list"), "PATCH": "patch", "POST": "create",
             "PUT": "update", "DELETE": "delete"}
    return group, resource, verbs[method]


def _on(obj: Obj, node: str | None, driver: str | None = None) -> bool:
    spec = obj.get("spec") or {}
    return (node is None or spec.get("nodeName") == node) and (driver is None or spec.get("driver") == driver)


def _field_selector(selector: str) -> dict[str, str] | None:
    """`a=b,c=d` -> {a: b, c: d}; None when it is not that form."""
    out: dict[str, str] = {}
    for part in [p for p in selector.split(",") if p]:
        key, sep, value = part.partition("=")
        if not sep:
            return None
        out[key.strip()] = value.strip()
    return out


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeApi
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watch streams, as the API server
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait between them

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                          "reason": reason, "code": code})

    def _route(self) -> tuple[str, list[str], dict[str, str]]:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.fake.requests.append(f"{self.command} {url.path}" + (" watch" if query.get("watch") == "true" else ""))
        return url.path, [p for p in url.path.split("/") if p], query

    def do_GET(self) -> None:
        path, parts, query = self._route()
        if path == "/api/v1/pods":
            self._collection(PODS, query, "PodList", "v1")
        elif path == f"{_NAD_PREFIX}/{NADS}":
            self._collection(NADS, query, "NetworkAttachmentDefinitionList", "k8s.cni.cncf.io/v1")
        elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            try:
                self._send(200, self.fake.get(PODS, parts[3], parts[5]))
            except KeyError:
                self._status(404, "NotFound", f'pods "{parts[5]}" not found')
        elif path == f"{_DRA_PREFIX}/{SLICES}":
            self._slices(query)
        elif len(parts) == 7 and parts[:4] == ["apis", "resource.k8s.io", "v1", "namespaces"] and parts[5] == CLAIMS:
            try:
                self._send(200, self.fake.get(CLAIMS, parts[4], parts[6]))
            except KeyError:
                self._status(404, "NotFound", f'resourceclaims.resource.k8s.io "{parts[6]}" not found')
        elif len(parts) == 7 and parts[:4] == ["apis", "k8s.cni.cncf.io", "v1", "namespaces"] and parts[5] == NADS:
            try:
                self._send(200, self.fake.get(NADS, parts[4], parts[6]))
            except KeyError:
                self._status(404, "NotFound", f'{NADS}.k8s.cni.cncf.io "{parts[6]}" not found')
        else:
            self._status(404, "NotFound", f"the fake API does not serve {path}")

    def _collection(self, kind: str, query: dict[str, str], list_kind: str, api_version: str) -> None:
        selector = query.get("fieldSelector", "")
        node = selector.split("=", 1)[1] if selector.startswith("spec.nodeName=") else None
        if selector and node is None:
            self._status(400, "BadRequest", f"unsupported fieldSelector {selector}")
        elif query.get("watch") in ("true", "1"):
            self._watch(kind, query, node)
        else:
            self._list(kind, query, node, list_kind, api_version)

    def _slices(self, query: dict[str, str]) -> None:
        selector = _field_selector(query.get("fieldSelector", ""))
        if selector is None or set(selector) - {"spec.nodeName", "spec.driver"}:
            self._status(400, "BadRequest", f"unsupported fieldSelector {query.get('fieldSelector')}")
            return
        if self._failing("GET"):
            return
        with self.fake.cond:
            items = [copy.deepcopy(o) for (k, _, _), o in sorted(self.fake.objects.items())
                     if k == SLICES and _on(o, selector.get("spec.nodeName"), selector.get("spec.driver"))]
            rv = self.fake.rv
        self._send(200, {"kind": "ResourceSliceList", "apiVersion": "resource.k8s.io/v1",
                         "metadata": {"resourceVersion": str(rv)}, "items": items})

    def _failing(self, method: str) -> bool:
        """Answer 500 while the test asked for failures of this method on slices."""
        with self.fake.cond:
            left = self.fake.fail_next.get(f"{method} {SLICES}", 0)
            if left <= 0:
                return False
            self.fake.fail_next[f"{method} {SLICES}"] = left - 1
        self._status(500, "InternalError", "injected failure")
        return True

    def _slice_name(self, parts: list[str]) -> str | None:
        if len(parts) == 5 and parts[:4] == ["apis", "resource.k8s.io", "v1", SLICES]:
            return parts[4]
        return None

    def do_PUT(self) -> None:
        path, parts, _ = self._route()
        body = self._body()
        name = self._slice_name(parts)
        if name is None:
            self._status(404, "NotFound", f"the fake API does not replace {path}")
            return
        if self._failing("PUT"):
            return
        with self.fake.cond:
            key = (SLICES, "", name)
            old = self.fake.objects.get(key)
            if old is None:
                self._status(404, "NotFound", f'resourceslices.resource.k8s.io "{name}" not found')
                return
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                self._status(409, "Conflict", f"the object has been modified (resourceVersion {wanted})")
                return
            body["metadata"]["uid"] = old["metadata"]["uid"]
            self.fake._store(SLICES, key, body, "MODIFIED")
            out = copy.deepcopy(body)
        self._send(200, out)

    def do_DELETE(self) -> None:
        path, parts, _ = self._route()
        name = self._slice_name(parts)
        if name is None:
            self._status(404, "NotFound", f"the fake API does not delete {path}")
            return
        if self._failing("DELETE"):
            return
        with self.fake.cond:
            if (SLICES, "", name) not in self.fake.objects:
                self._status(404, "NotFound", f'resourceslices.resource.k8s.io "{name}" not found')
                return
            self.fake.delete(SLICES, "", name)
        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def _create_slice(self, body: Obj) -> None:
        if self._failing("POST"):
            return
        meta = body.setdefault("metadata", {})
        with self.fake.cond:
            key = (SLICES, "", meta.get("name", ""))
            if not meta.get("name") or key in self.fake.objects:
                self._status(409, "AlreadyExists", f'resourceslices.resource.k8s.io "{meta.get("name")}" already '
                             "exists")
                return
            meta["uid"] = str(uuid.uuid4())
            self.fake._store(SLICES, key, body, "ADDED")
            out = copy.deepcopy(body)
        self._send(201, out)

    def _list(self, kind: str, query: dict[str, str], node: str | None, list_kind: str, api_version: str) -> None:
        with self.fake.cond:
            items, rv = self.fake.listed(kind, node), self.fake.rv
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0) or len(items)
        page = items[start:start + limit]
        meta: Obj = {"resourceVersion": str(rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        self._send(200, {"kind": list_kind, "apiVersion": api_version, "metadata": meta, "items": page})

    def _watch(self, kind: str, query: dict[str, str], node: str | None) -> None:
        since = int(query.get("resourceVersion") or 0)
        timeout = float(query.get("timeoutSeconds") or 60)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in self.fake.changes(kind, since, node, timeout):
                if event is not None:
                    self._chunk(json.dumps(event).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _body(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")

    def do_PATCH(self) -> None:
        path, parts, _ = self._route()
        body = self._body()
        content_type = self.headers.get("Content-Type", "")
        if not (len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods"):
            self._status(404, "NotFound", f"the fake API does not patch {path}")
            return
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            self._status(415, "UnsupportedMediaType", f"the fake API does not apply {content_type} patches")
            return
        namespace, name = parts[3], parts[5]
        with self.fake.cond:
            key = (PODS, namespace, name)
            if key not in self.fake.objects:
                self._status(404, "NotFound", f'pods "{name}" not found')
                return
            # for metadata.annotations (all the controller patches) both patch kinds merge the same way
            patched = merge_patch(self.fake.objects[key], body)
            self.fake.patches.append((namespace, name, content_type, body))
            self.fake._store(PODS, key, patched, "MODIFIED")
            out = copy.deepcopy(patched)
        self._send(200, out)

    def do_POST(self) -> None:
        path, parts, _ = self._route()
        body = self._body()
        if path == f"{_DRA_PREFIX}/{SLICES}":
            self._create_slice(body)
            return
        if not (len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events"):
            self._status(404, "NotFound", f"the fake API does not create {path}")
            return
        meta = body.setdefault("metadata", {})
        if meta.get("namespace", parts[3]) != parts[3]:
            self._status(400, "BadRequest", "the namespace of the object does not match the request")
            return
        meta["name"] = meta.get("name") or f"{meta.get('generateName', 'event.')}{uuid.uuid4().hex[:10]}"
        with self.fake.cond:
            self.fake.events.append(body)
        self._send(201, body)
