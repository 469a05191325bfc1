"""What the resource injector adds to a pod, as a JSON Patch (RFC 6902). Pure: no I/O.

As network-resources-injector does: for every network the pod names in
`k8s.v1.cni.cncf.io/networks` (and `v1.multus-cni.io/default-network`), the NAD's
`k8s.v1.cni.cncf.io/resourceName` is requested once more (a network named twice, twice), in the
requests and the limits of the first container. A resource the pod already requests in any
container is left as the pod wrote it; with `honor_existing`, the networks' count is added to
what the first container already asks for (its request and limit set to the same total, as
Kubernetes requires of an extended resource). Then, when any resource was needed, the downward-API
volume `podnetinfo` (the pod's `labels` and `annotations`, each when the pod has some) is added
and mounted read-only at `/etc/podnetinfo` in every container: that is where the SR-IOV apps and
app-netutil read their network-status. A NAD's `k8s.v1.cni.cncf.io/nodeSelector` ("label=value")
is merged into the pod's nodeSelector.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sriovkit.multus import (
    NETWORKS_ANNOTATION,
    RESOURCE_NAME_ANNOTATION,
    NetworkAnnotationError,
    NetworkSelection,
    parse_networks,
)

DEFAULT_NETWORK_ANNOTATION = "v1.multus-cni.io/default-network"
NODE_SELECTOR_ANNOTATION = "k8s.v1.cni.cncf.io/nodeSelector"  # on a NAD: "label=value" (or "label")
PODNETINFO_VOLUME = "podnetinfo"
PODNETINFO_PATH = "/etc/podnetinfo"

Obj = dict[str, Any]
Op = dict[str, Any]
# (namespace, name) -> the NAD object, or None when there is none; raises for any other failure
NadLookup = Callable[[str, str], Obj | None]


@dataclass(frozen=True, slots=True)
class Injection:
    """The outcome for one pod: the patch (empty: admit unchanged) and what to tell about it."""

    patch: list[Op] = field(default_factory=list)
    resources: Mapping[str, int] = field(default_factory=dict)
    # the pod is admitted unchanged for this reason (a missing NAD, an unreadable annotation...)
    problem: str | None = None
    reason: str = ""  # the Event's reason for `problem`


def requested_networks(pod: Obj, namespace: str) -> list[NetworkSelection]:
    """The networks `pod` names, in order; raises NetworkAnnotationError for an unreadable annotation."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    who = f"{namespace}/{pod_name(pod)}"
    selections: list[NetworkSelection] = []
    for key in (DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION):
        value = annotations.get(key)
        if isinstance(value, str) and value.strip():
            found = parse_networks(value, pod=who, default_namespace=namespace)  # keys as Multus reads them
            if key == DEFAULT_NETWORK_ANNOTATION:
                found = found[:1]  # one default network, as the injector reads it
            selections += found
    return selections


def pod_name(pod: Obj) -> str:
    """The pod's name; a pod made by a controller has only a generateName when it is admitted."""
    meta = pod.get("metadata") or {}
    return str(meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else ""))


def inject(pod: Obj, namespace: str, lookup: NadLookup, *, honor_existing: bool = False,
           resource_name_keys: Sequence[str] = (RESOURCE_NAME_ANNOTATION,)) -> Injection:
    """The injection for `pod` (created in `namespace`). Fails open: any problem admits it unchanged."""
    try:
        selections = requested_networks(pod, namespace)
    except NetworkAnnotationError as exc:
        return Injection(problem=f"{exc}; no resources injected", reason="InvalidNetworkAnnotation")
    if not selections:
        return Injection()
    if not (pod.get("spec") or {}).get("containers"):
        return Injection(problem=f"pod {namespace}/{pod_name(pod)} has no containers; no resources injected",
                         reason="NoContainers")
    counts: Counter[str] = Counter()
    node_selector: dict[str, str] = {}
    for selection in selections:
        try:
            nad = lookup(selection.namespace, selection.name)
        except Exception as exc:  # the API may be away or refuse us: admit, do not block pod creation
            return Injection(problem=f"cannot read NetworkAttachmentDefinition {selection.network} for pod "
                             f"{namespace}/{pod_name(pod)}: {exc}; no resources injected", reason="NADUnreadable")
        if nad is None:
            return Injection(problem=f"NetworkAttachmentDefinition {selection.network} named by pod "
                             f"{namespace}/{pod_name(pod)} in {NETWORKS_ANNOTATION} does not exist; no resources "
                             "injected (the pod will not get that network's device)", reason="NADNotFound")
        annotations = (nad.get("metadata") or {}).get("annotations") or {}
        for key in resource_name_keys:
            resource = annotations.get(key)
            if isinstance(resource, str) and resource.strip():
                counts[resource.strip()] += 1
        wanted = annotations.get(NODE_SELECTOR_ANNOTATION)
        if isinstance(wanted, str) and wanted.strip():
            label, _, value = wanted.partition("=")
            if "=" in value:
                return Injection(problem=f"NetworkAttachmentDefinition {selection.network}: annotation "
                                 f"{NODE_SELECTOR_ANNOTATION} {wanted!r} has more than one label; no resources "
                                 "injected", reason="InvalidNodeSelector")
            node_selector[label.strip()] = value.strip()
    patch: list[Op] = []
    if counts:
        patch = resource_patch(pod, dict(counts), honor_existing=honor_existing)
        patch += podnetinfo_patch(pod)
    if node_selector:  # the nodes where the NAD's network exists, as network-resources-injector adds them
        merged = {**((pod.get("spec") or {}).get("nodeSelector") or {}), **node_selector}
        patch.append({"op": "add", "path": "/spec/nodeSelector", "value": merged})
    return Injection(patch=patch, resources=dict(counts))


def resource_patch(pod: Obj, counts: Mapping[str, int], *, honor_existing: bool = False) -> list[Op]:
    """Requests and limits of the first container for `counts` (resource -> devices)."""
    containers = pod["spec"]["containers"]
    first = containers[0]
    resources = first.get("resources")
    ops: list[Op] = []
    if not isinstance(resources, dict):
        ops.append({"op": "add", "path": "/spec/containers/0/resources", "value": {}})
        resources = {}
    wanted = dict(counts)
    if not honor_existing:  # the pod's own request wins, in whichever container it is
        for container in containers:
            held = container.get("resources") or {}
            for kind in ("requests", "limits"):
                for resource in list(wanted):
                    if resource in (held.get(kind) or {}):
                        del wanted[resource]
    held = {kind: resources.get(kind) or {} for kind in ("requests", "limits")}
    for kind, existing in held.items():
        if not existing:
            ops.append({"op": "add", "path": f"/spec/containers/0/resources/{kind}", "value": {}})
        for resource, count in sorted(wanted.items()):
            # an extended resource's request must equal its limit: both get the same total
            base = max(_devices(held["requests"].get(resource)), _devices(held["limits"].get(resource)))
            total = count + (base if honor_existing else 0)
            ops.append({"op": "add", "path": f"/spec/containers/0/resources/{kind}/{_pointer(resource)}",
                        "value": str(total)})
    return ops


def podnetinfo_patch(pod: Obj) -> list[Op]:
    """The downward-API volume with the pod's labels and annotations, mounted in every container."""
    spec = pod["spec"]
    ops: list[Op] = []
    mount = {"name": PODNETINFO_VOLUME, "readOnly": True, "mountPath": PODNETINFO_PATH}
    for index, container in enumerate(spec["containers"]):
        mounts = container.get("volumeMounts") or []
        # already there, or the path taken by a volume of the pod's own: adding ours would make the pod invalid
        if any(m.get("name") == PODNETINFO_VOLUME or m.get("mountPath") == PODNETINFO_PATH for m in mounts):
            continue
        if not mounts:
            ops.append({"op": "add", "path": f"/spec/containers/{index}/volumeMounts", "value": []})
        ops.append({"op": "add", "path": f"/spec/containers/{index}/volumeMounts/-", "value": mount})
    volumes = spec.get("volumes") or []
    if any(v.get("name") == PODNETINFO_VOLUME for v in volumes):
        return ops
    meta = pod.get("metadata") or {}
    items = [{"path": what, "fieldRef": {"fieldPath": f"metadata.{what}"}}
             for what in ("labels", "annotations") if meta.get(what)]
    if not volumes:
        ops.append({"op": "add", "path": "/spec/volumes", "value": []})
    ops.append({"op": "add", "path": "/spec/volumes/-",
                "value": {"name": PODNETINFO_VOLUME, "downwardAPI": {"items": items}}})
    return ops


def _pointer(key: str) -> str:
    """`key` as one JSON Pointer token (RFC 6901): '~' and '/' escaped."""
    return key.replace("~", "~0").replace("/", "~1")


def _devices(quantity: Any) -> int:
    """A device count the pod wrote ("2", 2); anything that is not a whole number counts as none."""
    try:
        return max(int(str(quantity).strip()), 0)
    except ValueError:
        return 0
