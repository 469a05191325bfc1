"""NetworkAttachmentDefinitions: the CNI config a network name stands for.

`spec.config` is one plugin's config (it has `type`) or a conflist (it has
`plugins`); both become a `NetworkDefinition` whose `plugins` run in order.
The `k8s.v1.cni.cncf.io/resourceName` annotation names the device-plugin pool
whose device the pod must bring.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sriovkit import gojson
from sriovkit.errors import SriovkitError
from sriovkit.multus import RESOURCE_NAME_ANNOTATION

DEFAULT_CNI_VERSION = "0.3.1"  # what Multus assumes when a config names none


class NetworkDefinitionError(SriovkitError, ValueError):
    """A NAD that cannot be used; the message names the NAD, the field and the value."""


@dataclass(frozen=True, slots=True)
class NetworkDefinition:
    namespace: str
    name: str
    cni_version: str
    network_name: str  # the CNI `name` the plugins get
    plugins: tuple[Mapping[str, Any], ...]
    resource_name: str | None = None

    @property
    def network(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_list(self) -> bool:
        return len(self.plugins) != 1


def parse_nad(obj: Mapping[str, Any]) -> NetworkDefinition:
    """A NAD object as the API returns it (a dict) -> its definition."""
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    where = f"NetworkAttachmentDefinition {namespace}/{name}"
    raw = (obj.get("spec") or {}).get("config")
    if not isinstance(raw, str) or not raw.strip():
        raise NetworkDefinitionError(f"{where}: spec.config is empty; a hot-plug needs the CNI config in it")
    try:
        config = gojson.plain(gojson.parse(raw).value)
    except gojson.JsonError as exc:  # nesting, NaN, syntax, or a number no float64 holds
        raise NetworkDefinitionError(f"{where}: spec.config is not JSON ({exc}): {gojson.show(raw)}") from None
    if not isinstance(config, dict):
        raise NetworkDefinitionError(f"{where}: spec.config must be a JSON object: {raw!r}")
    resource = (meta.get("annotations") or {}).get(RESOURCE_NAME_ANNOTATION) or None
    version = config.get("cniVersion") or DEFAULT_CNI_VERSION
    if not isinstance(version, str):
        raise NetworkDefinitionError(f"{where}: spec.config cniVersion must be a string: {version!r}")
    network_name = config.get("name") or name
    if "plugins" in config:
        plugins = config["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise NetworkDefinitionError(f"{where}: spec.config plugins must be a non-empty list: {plugins!r}")
    elif "type" in config:
        plugins = [{k: v for k, v in config.items() if k not in ("cniVersion", "name")}]
    else:
        raise NetworkDefinitionError(f"{where}: spec.config has neither 'type' nor 'plugins': {raw!r}")
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise NetworkDefinitionError(f"{where}: spec.config plugins[{index}] needs a string 'type': "
                                         f"{json.dumps(plugin)}")
        if "/" in plugin["type"] or plugin["type"] in (".", ".."):
            raise NetworkDefinitionError(f"{where}: spec.config plugin type {plugin['type']!r} is not a plain "
                                         "binary name")
    return NetworkDefinition(namespace, name, version, str(network_name), tuple(plugins), resource)
