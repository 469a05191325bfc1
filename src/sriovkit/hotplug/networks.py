"""The pod's desired secondary networks: Multus' `k8s.v1.cni.cncf.io/networks` annotation.

Two syntaxes, as Multus accepts them: a comma-separated list of `name`,
`namespace/name` and `name@ifname` items, or a JSON list of objects with
`name`, `namespace`, `interface`, `mac`, `ips`, `default-route`. Interfaces not
named are called `net1`, `net2`... by position, as Multus names them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"

# Linux interface names: at most 15 bytes, no '/', no whitespace, not '.' or '..'
_IFNAME = re.compile(r"^[^/\s:]{1,15}$")
# DNS-1123 label (namespaces) and subdomain (object names)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SELECTION_KEYS = frozenset({"name", "namespace", "interface", "mac", "ips", "default-route",
                             "cni-args", "portMappings", "bandwidth", "infiniband-guid", "ipam-claim-reference"})


class NetworkAnnotationError(ValueError):
    """The annotation cannot be read; the message names the pod, the annotation and the value."""


@dataclass(frozen=True, slots=True)
class NetworkSelection:
    """One requested attachment. `interface` is None when the pod did not name it."""

    namespace: str
    name: str
    interface: str | None = None
    mac: str | None = None
    ips: tuple[str, ...] = ()
    default_route: tuple[str, ...] = ()
    cni_args: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def network(self) -> str:
        """`namespace/name`, as network-status names it."""
        return f"{self.namespace}/{self.name}"


def parse_networks(value: str, *, pod: str, default_namespace: str) -> list[NetworkSelection]:
    """The selections in annotation `value` of `pod` (`namespace/name`, for messages)."""
    text = value.strip()
    if not text:
        return []
    where = f"pod {pod}: annotation {NETWORKS_ANNOTATION}"
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NetworkAnnotationError(f"{where}: invalid JSON ({exc.msg} at {exc.pos}): {value!r}") from None
        if not isinstance(items, list):
            raise NetworkAnnotationError(f"{where}: expected a JSON list: {value!r}")
        return [_from_json(item, where, default_namespace) for item in items]
    return [_from_text(item.strip(), where, default_namespace) for item in text.split(",")]


def _from_text(item: str, where: str, default_namespace: str) -> NetworkSelection:
    if not item:
        raise NetworkAnnotationError(f"{where}: empty item in the list")
    name, _, interface = item.partition("@")
    namespace, _, bare = name.rpartition("/")
    return _checked(NetworkSelection(namespace or default_namespace, bare, interface or None), where, item)


def _from_json(item: Any, where: str, default_namespace: str) -> NetworkSelection:
    if not isinstance(item, dict):
        raise NetworkAnnotationError(f"{where}: list item is not an object: {json.dumps(item)}")
    shown = json.dumps(item, sort_keys=True)
    unknown = sorted(set(item) - _SELECTION_KEYS)
    if unknown:
        raise NetworkAnnotationError(f"{where}: unknown field {unknown[0]!r} in {shown}")
    for key in ("name", "namespace", "interface", "mac"):
        if key in item and not isinstance(item[key], str):
            raise NetworkAnnotationError(f"{where}: field {key!r} must be a string in {shown}")
    for key in ("ips", "default-route"):
        if key in item and not (isinstance(item[key], list) and all(isinstance(v, str) for v in item[key])):
            raise NetworkAnnotationError(f"{where}: field {key!r} must be a list of strings in {shown}")
    if "cni-args" in item and not isinstance(item["cni-args"], dict):
        raise NetworkAnnotationError(f"{where}: field 'cni-args' must be an object in {shown}")
    selection = NetworkSelection(
        namespace=item.get("namespace") or default_namespace, name=item.get("name", ""),
        interface=item.get("interface") or None, mac=item.get("mac") or None,
        ips=tuple(item.get("ips", ())), default_route=tuple(item.get("default-route", ())),
        cni_args=dict(item.get("cni-args", {})))
    return _checked(selection, where, shown)


def _checked(selection: NetworkSelection, where: str, shown: str) -> NetworkSelection:
    if not _SUBDOMAIN.match(selection.name):
        raise NetworkAnnotationError(f"{where}: network name {selection.name!r} is not a valid object name in {shown}")
    if not _LABEL.match(selection.namespace):
        raise NetworkAnnotationError(f"{where}: namespace {selection.namespace!r} is not valid in {shown}")
    if selection.interface is not None and (not _IFNAME.match(selection.interface)
                                            or selection.interface in (".", "..")):
        raise NetworkAnnotationError(f"{where}: interface {selection.interface!r} is not a valid interface name "
                                     f"(1-15 characters, no '/', ':' or space) in {shown}")
    return selection


@dataclass(frozen=True, slots=True)
class DesiredAttachment:
    """A selection with its interface name settled."""

    selection: NetworkSelection
    interface: str

    @property
    def network(self) -> str:
        return self.selection.network


def name_interfaces(selections: Sequence[NetworkSelection], *, pod: str,
                    keep: Mapping[str, str] | None = None) -> list[DesiredAttachment]:
    """Give every selection its interface: the pod's name, else `net<position+1>` as Multus does.

    `keep` maps `namespace/name` to an interface this controller already gave that network
    without the pod naming one, so removing an earlier network does not rename (and so
    re-plug) the later ones. Two selections on one interface name is the pod's error.
    """
    keep = dict(keep or {})
    explicit = {s.interface for s in selections if s.interface}
    taken: set[str] = set()
    out: list[DesiredAttachment] = []
    for position, selection in enumerate(selections, start=1):
        interface = selection.interface or _auto_name(selection, position, keep, explicit | taken)
        if interface in taken:
            raise NetworkAnnotationError(
                f"pod {pod}: annotation {NETWORKS_ANNOTATION}: interface {interface!r} requested twice")
        taken.add(interface)
        out.append(DesiredAttachment(selection, interface))
    return out


def _auto_name(selection: NetworkSelection, position: int, keep: dict[str, str], taken: Iterable[str]) -> str:
    used = set(taken)
    kept = keep.pop(selection.network, None)
    if kept is not None and kept not in used:
        return kept
    candidate = f"net{position}"
    number = position
    while candidate in used or candidate in keep.values():
        number += 1
        candidate = f"net{number}"
    return candidate
