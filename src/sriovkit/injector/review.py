"""One AdmissionReview in, its answer out (admission.k8s.io/v1, and v1beta1 as older API servers
send). Pure apart from the two callables it is given: the NAD lookup and the Event sink."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sriovkit.errors import SriovkitError
from sriovkit.injector.patch import Injection, NadLookup, Obj, inject, pod_name
from sriovkit.multus import RESOURCE_NAME_ANNOTATION

log = logging.getLogger(__name__)

# (pod, namespace, reason, message): tell the pod's owner why nothing was injected
EventSink = Callable[[Obj, str, str, str], None]
_API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


class BadReview(SriovkitError, ValueError):
    """Not an AdmissionReview this webhook can answer (HTTP 400)."""


@dataclass(frozen=True)
class Reviewer:
    lookup: NadLookup
    events: EventSink | None = None
    honor_existing: bool = False
    resource_name_keys: Sequence[str] = (RESOURCE_NAME_ANNOTATION,)

    def __call__(self, body: bytes) -> Obj:
        review = _decode(body)
        request = review["request"]
        pod = request.get("object")
        response: Obj = {"uid": request.get("uid", ""), "allowed": True}
        if request.get("operation", "CREATE") == "CREATE" and _is_pod(request, pod):
            assert isinstance(pod, dict)
            namespace = str(request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "default")
            outcome = inject(pod, namespace, self.lookup, honor_existing=self.honor_existing,
                             resource_name_keys=self.resource_name_keys)
            self._tell(pod, namespace, outcome, dry_run=bool(request.get("dryRun")))
            if outcome.patch:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(outcome.patch).encode()).decode()
            if outcome.problem:
                response["warnings"] = [outcome.problem[:512]]
        return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}

    def _tell(self, pod: Obj, namespace: str, outcome: Injection, *, dry_run: bool) -> None:
        who = f"{namespace}/{pod_name(pod)}"
        if outcome.resources:
            log.info("injected pod=%s resources=%s", who,
                     ",".join(f"{r}={n}" for r, n in sorted(outcome.resources.items())))
        if outcome.problem is None:
            return
        log.warning("admitted unchanged pod=%s reason=%s: %s", who, outcome.reason, outcome.problem)
        if self.events is not None and not dry_run:  # sideEffects: NoneOnDryRun
            try:
                self.events(pod, namespace, outcome.reason, outcome.problem)
            except Exception as exc:  # the answer must not wait for, or fail on, an Event
                log.warning("cannot post Event for pod=%s: %s: %s", who, type(exc).__name__, exc)


def _decode(body: bytes) -> Obj:
    try:
        review = json.loads(body)
    except (ValueError, RecursionError) as exc:  # whatever the bytes: a deep document is no review either
        raise BadReview(f"body is not JSON: {exc}") from None
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        raise BadReview("body is not an AdmissionReview")
    if review.get("apiVersion") not in _API_VERSIONS:
        raise BadReview(f"apiVersion {review.get('apiVersion')!r}: expected one of {', '.join(_API_VERSIONS)}")
    if not isinstance(review.get("request"), dict):
        raise BadReview("AdmissionReview has no request")
    return review


def _is_pod(request: Obj, pod: Any) -> bool:
    kind = request.get("kind") or {}
    resource = request.get("resource") or {}
    return isinstance(pod, dict) and not request.get("subResource") and (
        kind.get("kind") == "Pod" or resource.get("resource") == "pods")
