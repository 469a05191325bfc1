"""Kubernetes Events about this node, from the agent (a config reload that failed, ...).

Posted from a thread of their own: the caller (the device plugin's watch loop) must never wait
for the API server. An Event that cannot be posted is logged and dropped: the log line that
said the same thing already exists.
"""

from __future__ import annotations

import datetime
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger(__name__)

COMPONENT = "sriovkit-agent"
NODE_EVENT_NAMESPACE = "default"  # where the kubelet's own Node events go
_REQUEST_TIMEOUT_S = 10
_QUEUE_MAX = 100


def node_event_body(node: str, event_type: str, reason: str, message: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{node}.", "namespace": NODE_EVENT_NAMESPACE},
        # the kubelet names its node by name in the uid too; a Node has no namespace
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node},
        "type": event_type, "reason": reason, "message": message[:1024],
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT, "reportingInstance": node,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }


class EventQueue:
    """A component: `submit(body)` queues an Event, a thread creates it with `create(body)`."""

    def __init__(self, create: Callable[[dict[str, Any]], None]) -> None:
        self._create = create
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=_QUEUE_MAX)
        self._thread: threading.Thread | None = None

    def submit(self, body: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(body)
        except queue.Full:  # the API server is away for long: the log has it
            log.warning("event dropped (queue full) reason=%s", body.get("reason"))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=_REQUEST_TIMEOUT_S + 2)

    def _run(self) -> None:
        while (body := self._queue.get()) is not None:
            try:
                self._create(body)
            except Exception as exc:  # the API may refuse us (RBAC) or be away: say so, go on
                first = str(exc).splitlines()[0] if str(exc) else ""
                log.warning("cannot post Event reason=%s about %s: %s: %s", body.get("reason"),
                            (body.get("involvedObject") or {}).get("name"), type(exc).__name__, first)


class NodeEvents(EventQueue):
    """Events about this node; `create` as `client_create` makes it."""

    def __init__(self, node: str, *, create: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(create)
        self.node = node

    def post(self, event_type: str, reason: str, message: str) -> None:
        self.submit(node_event_body(self.node, event_type, reason, message))


def client_create(kubeconfig: str | None) -> Callable[[dict[str, Any]], None]:
    """Creates an Event (in its own namespace) through the `kubernetes` client; raises the client's
    configuration errors now, not at the first Event."""
    from kubernetes import client

    from sriovkit.kubeclient import api_client

    core = client.CoreV1Api(api_client(kubeconfig))

    def create(body: dict[str, Any]) -> None:
        # the client sends a dict body as it is (its CoreV1Event model is only one way to build one)
        core.create_namespaced_event(body["metadata"]["namespace"], cast(Any, body),
                                     _request_timeout=_REQUEST_TIMEOUT_S)

    return create
