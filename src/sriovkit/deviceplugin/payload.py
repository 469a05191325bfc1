"""What `Allocate` hands the kubelet for a pool's devices: pure, no I/O.

Upstream's device plugin is the reference for every name and format here:
device nodes per driver family (vfio, uio, RDMA, vhost-net), the
``PCIDEVICE_<PREFIX>_<RESOURCE>`` variable with the comma-separated IDs and the
``..._INFO`` variable with one JSON object per device, keyed by info provider
(``generic``, ``vfio``, ``uio``, ``rdma``, ``vhost``, ``extra``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sriovkit import devinfo
from sriovkit.host.model import AuxDevice, PciDevice
from sriovkit.resources.config import ResourceConfig, Selector
from sriovkit.resources.selectors import Device, device_id, selector_rejects

VFIO_CONTAINER = "/dev/vfio/vfio"
VHOST_NET = "/dev/vhost-net"
TUN = "/dev/net/tun"
RDMA_DIR = "/dev/infiniband"
RDMA_CM = f"{RDMA_DIR}/rdma_cm"
READ_WRITE = "rw"
# CDI annotations live under this prefix; the part after it names the plugin
# and must differ per pool, or a container using two pools gets one pool's devices.
CDI_ANNOTATION_PREFIX = "cdi.k8s.io/"
_RDMA_KINDS = ("uverbs", "umad", "issm", "rdma_cm")


@dataclass(frozen=True, slots=True)
class DeviceNode:
    """A device node the runtime creates in the container."""

    container_path: str
    host_path: str
    permissions: str = READ_WRITE


@dataclass(frozen=True, slots=True)
class HostDevNodes:
    """Which shared device nodes exist on the node (read by the caller)."""

    vhost_net: bool = False  # /dev/vhost-net and /dev/net/tun
    rdma_cm: bool = False  # /dev/infiniband/rdma_cm


@dataclass(frozen=True, slots=True)
class DevicePayload:
    """One device's share of an allocation: its nodes and its INFO entry."""

    device_id: str
    nodes: tuple[DeviceNode, ...]
    info: dict[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class ContainerAllocation:
    """One container's answer, independent of the gRPC message types."""

    envs: dict[str, str] = field(default_factory=dict)
    devices: tuple[DeviceNode, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    cdi_devices: tuple[str, ...] = ()


def env_name(resource: ResourceConfig) -> str:
    """``PCIDEVICE_<prefix>_<name>`` upper-cased with '.' turned to '_', as upstream
    mangles it (other characters, such as '-', stay)."""
    return f"PCIDEVICE_{resource.resource_prefix}_{resource.resource_name}".replace(".", "_").upper()


def cdi_kind(resource: ResourceConfig) -> str:
    return resource.full_name


def cdi_device_name(resource: ResourceConfig, dev_id: str) -> str:
    return f"{cdi_kind(resource)}={dev_id}"


def cdi_annotation_key(resource: ResourceConfig) -> str:
    """One key per pool (upstream uses one key for all pools of the plugin, so the
    runtime sees only one pool's devices when a container asks for two)."""
    name = f"sriovkit_{resource.resource_prefix}_{resource.resource_name}"
    return CDI_ANNOTATION_PREFIX + name[:63]


def taking_selector(resource: ResourceConfig, dev: Device, *, vhost_net: bool) -> Selector | None:
    """The first selector of `resource` that takes `dev`: its isRdma/needVhostNet
    decide which extra nodes the device brings."""
    for selector in resource.selectors:
        if selector_rejects(selector, dev, vhost_net=vhost_net) is None:
            return selector
    return None


def device_payload(dev: Device, resource: ResourceConfig, host: HostDevNodes) -> DevicePayload:
    """A pool's share of a device: what its taking selector's isRdma/needVhostNet ask for."""
    selector = taking_selector(resource, dev, vhost_net=host.vhost_net) or Selector()
    return _payload(dev, resource, host, rdma=selector.is_rdma, vhost=selector.need_vhost_net and host.vhost_net)


def claim_payload(dev: Device, resource: ResourceConfig, host: HostDevNodes, *, vhost: bool) -> DevicePayload:
    """A DRA claim's share of a device: nodes for its driver, RDMA nodes whenever it has an RDMA
    device (DRA claims ask by the rdmaCapable attribute, not by selector), vhost-net when asked."""
    return _payload(dev, resource, host, rdma=True, vhost=vhost)


def _payload(dev: Device, resource: ResourceConfig, host: HostDevNodes, *, rdma: bool, vhost: bool) -> DevicePayload:
    dev_id = device_id(dev)
    nodes: list[DeviceNode] = []
    info: dict[str, dict[str, str]] = {"generic": {"deviceID": dev_id}}
    if isinstance(dev, PciDevice):
        _driver_nodes(dev, nodes, info)
    if rdma and dev.rdma_devices:
        _rdma_nodes(dev, host, nodes, info)
    if vhost:
        nodes += [DeviceNode(VHOST_NET, VHOST_NET), DeviceNode(TUN, TUN)]
        info["vhost"] = {"net-mount": VHOST_NET, "tun-mount": TUN}
    extra = _extra_info(resource, dev_id)
    if extra:
        info["extra"] = extra
    return DevicePayload(dev_id, tuple(nodes), info)


def _driver_nodes(dev: PciDevice, nodes: list[DeviceNode], info: dict[str, dict[str, str]]) -> None:
    if dev.uses_vfio:
        nodes.append(DeviceNode(VFIO_CONTAINER, VFIO_CONTAINER))
        vfio = {"mount": VFIO_CONTAINER}
        group = dev.vfio_group_device
        if group is not None:
            nodes.append(DeviceNode(group, group))
            vfio["dev-mount"] = group
        info["vfio"] = vfio
    elif dev.uses_uio and dev.uio_devices:
        path = f"/dev/{dev.uio_devices[0]}"
        nodes.append(DeviceNode(path, path))
        info["uio"] = {"mount": path}


def _rdma_nodes(
    dev: PciDevice | AuxDevice, host: HostDevNodes, nodes: list[DeviceNode], info: dict[str, dict[str, str]]
) -> None:
    paths = [f"{RDMA_DIR}/{name}" for name in dev.rdma_char_devices]
    if host.rdma_cm:
        paths.append(RDMA_CM)
    rdma: dict[str, str] = {}
    for path in paths:
        nodes.append(DeviceNode(path, path))
        base = path.rsplit("/", 1)[1]
        kind = next((k for k in _RDMA_KINDS if base.startswith(k)), None)
        if kind is not None:
            rdma[kind] = path
    rdma["rdma_dev"] = dev.rdma_devices[0]
    info["rdma"] = rdma


def _extra_info(resource: ResourceConfig, dev_id: str) -> dict[str, str]:
    # '*' first, then the device's own entry overrides it (upstream's order)
    merged: dict[str, str] = {}
    for key in ("*", dev_id):
        merged.update(resource.additional_info.get(key, {}))
    return merged


def info_json(payloads: Iterable[DevicePayload]) -> str:
    """The ``_INFO`` value byte for byte as Go's encoding/json writes it: compact,
    keys sorted, and <, >, & escaped."""
    text = json.dumps({p.device_id: p.info for p in payloads}, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def container_allocation(
    resource: ResourceConfig, payloads: Sequence[DevicePayload], *, use_cdi: bool = False
) -> ContainerAllocation:
    """Env, device nodes (deduplicated by host path, first wins) or, in CDI mode,
    the CDI device names and this pool's annotation instead of nodes."""
    key = env_name(resource)
    envs = {key: ",".join(p.device_id for p in payloads), f"{key}_INFO": info_json(payloads)}
    if use_cdi:
        names = tuple(cdi_device_name(resource, p.device_id) for p in payloads)
        return ContainerAllocation(envs, (), {cdi_annotation_key(resource): ",".join(names)}, names)
    return ContainerAllocation(envs, unique_nodes(n for p in payloads for n in p.nodes))


def unique_nodes(nodes: Iterable[DeviceNode]) -> tuple[DeviceNode, ...]:
    seen: dict[str, DeviceNode] = {}
    for node in nodes:
        seen.setdefault(node.host_path, node)
    return tuple(seen.values())


def cdi_spec(resource: ResourceConfig, payloads: Iterable[DevicePayload]) -> dict[str, object]:
    """A CDI spec (JSON form) naming every device of the pool with its nodes."""
    devices = [cdi_device(p.device_id, p.nodes) for p in payloads]
    return {"cdiVersion": CDI_VERSION, "kind": cdi_kind(resource), "devices": devices}


CDI_VERSION = "0.6.0"


def cdi_device(name: str, nodes: Iterable[DeviceNode], env: dict[str, str] | None = None) -> dict[str, object]:
    """One CDI device (JSON form): its device nodes and, if any, environment variables."""
    edits: dict[str, object] = {"deviceNodes": [
        {"path": n.container_path, "hostPath": n.host_path, "permissions": n.permissions} for n in nodes]}
    if env:
        edits["env"] = [f"{k}={v}" for k, v in env.items()]
    return {"name": name, "containerEdits": edits}


def device_info(dev: Device, payload: DevicePayload | None = None) -> dict[str, object] | None:
    """The Device Information document for a device; with its payload, the vhost-net node it
    brings is named too. None for an auxiliary device: the specification has no type for one
    (upstream writes none either)."""
    if isinstance(dev, AuxDevice):
        return None
    vhost = VHOST_NET if payload is not None and "vhost" in payload.info else None
    return devinfo.pci_device_info(dev.pci_address, pf_pci_address=dev.pf_address,
                                   rdma_device=",".join(dev.rdma_devices), vhost_net=vhost)


DEVICE_INFO_SUFFIX = "-device.json"


def device_info_file_prefix(resource: ResourceConfig) -> str:
    """What every device-info file name of `resource` starts with: ``<prefix>-<name>-``."""
    return f"{resource.full_name.replace('/', '-')}-"


def device_info_file_name(resource: ResourceConfig, dev_id: str) -> str:
    """``<prefix>-<name>-<device id>-device.json``: upstream's name for a device
    plugin's device-info file (the resource's '/' becomes '-')."""
    return f"{device_info_file_prefix(resource)}{dev_id}{DEVICE_INFO_SUFFIX}"
