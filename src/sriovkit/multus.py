"""Multus' models that hot-plug and the resource injector share: the annotations' names, where
NetworkAttachmentDefinitions are in the API, and a pod's `k8s.v1.cni.cncf.io/networks` annotation.

Two syntaxes, as Multus accepts them: a comma-separated list of `name`,
`namespace/name` and `name@ifname` items, or a JSON list of objects with
`name`, `namespace`, `interface`, `mac`, `ips`, `default-route`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sriovkit import gojson
from sriovkit.errors import SriovkitError

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
# NetworkAttachmentDefinitions: the CRD's group, version and plural in the API
NAD_GROUP = "k8s.cni.cncf.io"
NAD_VERSION = "v1"
NAD_PLURAL = "network-attachment-definitions"
log = logging.getLogger(__name__)

# Linux interface names: at most 15 bytes, no '/', no whitespace, not '.' or '..'
_IFNAME = re.compile(r"^[^/\s:]{1,15}$")
# DNS-1123 label (namespaces) and subdomain (object names)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class NetworkAnnotationError(SriovkitError, ValueError):
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
            tree = gojson.parse(text).value
        except gojson.JsonSyntaxError as exc:
            raise NetworkAnnotationError(f"{where}: {exc}: {gojson.show(value)}") from None
        items, report = gojson.decode(_SELECTIONS, tree)
        if report.problems:
            raise NetworkAnnotationError(f"{where}: {report.problems[0].line('')[2:]}")
        for notice in report.notices:  # Multus ignores them: say so, and go on as it does
            log.warning("%s: %s", where, notice.line("")[2:])
        return [_from_json(item, where, default_namespace) for item in items or ()]
    return [_from_text(item.strip(), where, default_namespace) for item in text.split(",")]


def _from_text(item: str, where: str, default_namespace: str) -> NetworkSelection:
    if not item:
        raise NetworkAnnotationError(f"{where}: empty item in the list")
    name, _, interface = item.partition("@")
    namespace, _, bare = name.rpartition("/")
    return _checked(NetworkSelection(namespace or default_namespace, bare, interface or None), where, item)


# Multus' NetworkSelectionElement, decoded as its Go code decodes it (keys folded, unknown ignored)
_F, _S = gojson.Field, gojson.String()
_SELECTIONS = gojson.Slice(gojson.Ptr(gojson.struct(
    _F("name", _S), _F("namespace", _S), _F("ips", gojson.Slice(_S)), _F("mac", _S), _F("infiniband-guid", _S),
    _F("interface", _S), _F("interfaceRequest", _S), _F("portMappings", gojson.Slice(gojson.Any_())),
    _F("bandwidth", gojson.Object()), _F("deviceID", _S), _F("cni-args", gojson.Object()),
    _F("default-route", gojson.Slice(_S)), _F("ipam-claim-reference", _S))))


def _from_json(item: dict[str, Any] | None, where: str, default_namespace: str) -> NetworkSelection:
    if item is None:
        raise NetworkAnnotationError(f"{where}: list item is null")
    shown = json.dumps(item, sort_keys=True)
    selection = NetworkSelection(
        namespace=item.get("namespace") or default_namespace, name=item.get("name", ""),
        interface=item.get("interface") or item.get("interfaceRequest") or None, mac=item.get("mac") or None,
        ips=tuple(item.get("ips") or ()), default_route=tuple(item.get("default-route") or ()),
        cni_args=dict(item.get("cni-args") or {}))
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
