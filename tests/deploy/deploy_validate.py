"""Offline validation of Kubernetes objects: built-in kinds against the API schemas of one
Kubernetes release (kubernetes-validate, strict: unknown fields are errors), and
NetworkAttachmentDefinitions, a CRD those schemas do not have, against our own schema
whose `spec.config` must be a JSON string holding a `sriov` CNI netconf.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate

from sriovkit.cni.spec import SUPPORTED_VERSIONS

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_PCI = r"^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$"
_ON_OFF = {"type": "string", "enum": ["on", "off"]}

NAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "k8s.cni.cncf.io/v1"},
        "kind": {"const": "NetworkAttachmentDefinition"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 253},
                "namespace": {"type": "string", "pattern": _DNS_LABEL, "maxLength": 63},
                "annotations": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "properties": {
                        # <DNS subdomain prefix>/<name>, as the device plugin advertises it, or a
                        # ResourceClaim's name (Multus 4.x keys a pod's DRA devices by claim name)
                        "k8s.v1.cni.cncf.io/resourceName": {
                            "type": "string",
                            "pattern": r"^([a-z0-9.-]+/[A-Za-z0-9_]+|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$"},
                    },
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["config"],
            "additionalProperties": False,
            "properties": {"config": {"type": "string"}},
        },
    },
}

# The sriov CNI's netconf as upstream sriov-cni documents it (docs/configuration.md has the meanings),
# with sriovkit's cross-field rules (src/sriovkit/cni/netconf.py). Stricter than the plugin in one way:
# unknown fields, which the plugin ignores as upstream does, are errors here to catch typos in examples.
SRIOV_NETCONF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["cniVersion", "name", "type"],
    "additionalProperties": False,
    "properties": {
        "cniVersion": {"type": "string", "enum": list(SUPPORTED_VERSIONS)},
        "name": {"type": "string", "minLength": 1},
        "type": {"const": "sriov"},
        "deviceID": {"type": "string", "pattern": _PCI},
        "pciBusID": {"type": "string", "pattern": _PCI},  # upstream's older name for deviceID
        "driver": {"type": "string"},  # sriovkit extension: bind the VF to this driver for the attachment
        # the seeds' plugin, without a device plugin: a VF picked from this PF (sriovkit.cni.pick)
        "if0": {"type": "string", "minLength": 1, "maxLength": 15},
        "master": {"type": "string", "minLength": 1, "maxLength": 15},
        "if0name": {"type": "string", "minLength": 1, "maxLength": 15},
        "l2enable": {"type": "boolean"},
        "cniDir": {"type": "string", "pattern": "^/"},
        "dpdk": {"type": "object", "additionalProperties": False,
                 "properties": {k: {"type": "string"} for k in ("kernel_driver", "dpdk_driver", "dpdk_tool")}},
        "vlan": {"type": "integer", "minimum": 0, "maximum": 4094},
        "vlanQoS": {"type": "integer", "minimum": 0, "maximum": 7},
        "vlanProto": {"type": "string", "enum": ["802.1Q", "802.1q", "802.1ad", "802.1AD"]},
        "mac": {"type": "string", "pattern": r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"},
        "spoofchk": _ON_OFF,
        "trust": _ON_OFF,
        "link_state": {"type": "string", "enum": ["auto", "enable", "disable"]},
        "min_tx_rate": {"type": "integer", "minimum": 0},
        "max_tx_rate": {"type": "integer", "minimum": 0},
        "mtu": {"type": "integer", "minimum": 68, "maximum": 65535},
        "ipam": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
        "dns": {"type": "object"},
        "logLevel": {"type": "string", "enum": ["panic", "error", "warning", "info", "debug"]},
        "logFile": {"type": "string"},
        "logFormat": {"type": "string", "enum": ["text", "json"]},
        "capabilities": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "runtimeConfig": {"type": "object"},
        "args": {"type": "object"},
    },
}


def _schema_problems(instance: Any, schema: dict[str, Any], where: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{where}: {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))]


def netconf_problems(text: str, where: str) -> list[str]:
    """Problems with a NAD's spec.config: not JSON, or not a sriov netconf."""
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"{where}: spec.config: not JSON: {exc.msg} at line {exc.lineno}"]
    problems = _schema_problems(conf, SRIOV_NETCONF_SCHEMA, f"{where}: spec.config")
    if conf.get("min_tx_rate", 0) and conf.get("max_tx_rate", 0) and conf["min_tx_rate"] > conf["max_tx_rate"]:
        problems.append(f"{where}: spec.config: min_tx_rate above max_tx_rate")
    for key in ("vlanQoS", "vlanProto"):
        if key in conf and "vlan" not in conf:
            problems.append(f"{where}: spec.config: {key} needs vlan to be set")
    if conf.get("vlanQoS") and conf.get("vlan") == 0:
        problems.append(f"{where}: spec.config: a non-zero vlanQoS needs a non-zero vlan")
    if str(conf.get("vlanProto", "")).lower() == "802.1ad" and conf.get("vlan") == 0:
        problems.append(f"{where}: spec.config: vlanProto 802.1ad needs a non-zero vlan")
    return problems


def nad_problems(obj: dict[str, Any], where: str) -> list[str]:
    problems = _schema_problems(obj, NAD_SCHEMA, where)
    config = obj.get("spec", {}).get("config") if isinstance(obj.get("spec"), dict) else None
    if isinstance(config, str):
        problems += netconf_problems(config, where)
    return problems


def pod_spec_problems(pod_spec: dict[str, Any], where: str) -> list[str]:
    """What the API schema cannot see: every mount names a volume, every volume is mounted."""
    volumes = {v["name"] for v in pod_spec.get("volumes", [])}
    containers = pod_spec.get("initContainers", []) + pod_spec.get("containers", [])
    mounted = {m["name"] for c in containers for m in c.get("volumeMounts", [])}
    problems = [f"{where}: volumeMount {name!r} has no volume" for name in sorted(mounted - volumes)]
    problems += [f"{where}: volume {name!r} is never mounted" for name in sorted(volumes - mounted)]
    return problems


def object_problems(obj: dict[str, Any], where: str, kubernetes_version: str) -> list[str]:
    """Every problem with one object, one line each naming `where` and the field."""
    if obj.get("kind") == "NetworkAttachmentDefinition":
        return nad_problems(obj, where)
    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: {'.'.join(map(str, exc.absolute_path)) or '(top)'}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{where}: {exc.message}"]
    template = obj.get("spec", {}).get("template", {}).get("spec")
    if isinstance(template, dict):
        return pod_spec_problems(template, where)
    return []
