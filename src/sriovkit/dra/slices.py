"""ResourceSlices for the node's DRA-served VFs: pure, no I/O.

One pool per PF (``<node>/<pf device name>``), one device per VF. Device names are the VF's PCI
address with ':' and '.' turned into '-' (a DNS label, as the API requires); attribute names and
types are dra-driver-sriov's, under the driver's own prefix, plus the Kubernetes standard and
Multus ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sriovkit.host.model import PciDevice

API_VERSION = "resource.k8s.io/v1"
MULTUS_PREFIX = "k8s.cni.cncf.io"
STANDARD_PREFIX = "resource.kubernetes.io"
DRANET_PREFIX = "dra.net"
UNHEALTHY_TAINT = "unhealthy"  # key under the driver's prefix; value says why
_LINK_TYPES = {"ether": "ethernet", "infiniband": "infiniband"}
_MAX_NAME = 253
MAX_DEVICES_PER_SLICE = 128  # the API's limit per ResourceSlice
MAX_DEVICES_WITH_TAINTS = 64  # ... when devices have taints


@dataclass(frozen=True, slots=True)
class VfFacts:
    """What a slice says about one VF, read from the host by the caller."""

    pci_address: str
    vendor: str  # the PF's vendor ID, as dra-driver-sriov publishes it
    device_id: str  # the VF's device ID
    pf_device_id: str
    pf_pci_address: str
    pf_name: str
    vf_index: int
    link_type: str  # ethernet | infiniband | unknown
    rdma_capable: bool
    numa_node: int  # -1: no affinity
    pcie_root: str  # e.g. pci0000:00 ('' when unknown)
    resource_name: str  # the config.json resource, e.g. intel.com/sriov_dra
    eswitch_mode: str = "legacy"


def device_name(pci_address: str) -> str:
    return pci_address.replace(":", "-").replace(".", "-")


def pool_name(node_name: str, pf_pci_address: str) -> str:
    return f"{node_name}/{device_name(pf_pci_address)}"


def vf_facts(vf: PciDevice, pf: PciDevice | None, *, resource_name: str, pcie_root: str,
             eswitch_mode: str = "legacy") -> VfFacts:
    """`vf` must be a VF (its PF's address known); `pf` may be missing from a racing snapshot."""
    assert vf.pf_address is not None
    link = pf.link_type if pf is not None else vf.link_type
    return VfFacts(
        pci_address=vf.pci_address,
        vendor=pf.vendor if pf is not None else vf.vendor,
        device_id=vf.device,
        pf_device_id=pf.device if pf is not None else "",
        pf_pci_address=vf.pf_address,
        pf_name=vf.pf_netdev or "",
        vf_index=vf.vf_index if vf.vf_index is not None else -1,
        link_type=_LINK_TYPES.get(link or "", "unknown"),
        rdma_capable=bool(vf.rdma_devices),
        numa_node=vf.numa_node if vf.numa_node is not None else -1,
        pcie_root=pcie_root,
        resource_name=resource_name,
        eswitch_mode=eswitch_mode,
    )


def _string(value: str) -> dict[str, object]:
    return {"string": value}


def _int(value: int) -> dict[str, object]:
    return {"int": value}


def device_attributes(facts: VfFacts, driver: str) -> dict[str, dict[str, object]]:
    attributes: dict[str, dict[str, object]] = {
        f"{driver}/vendor": _string(facts.vendor),
        f"{driver}/deviceID": _string(facts.device_id),
        f"{driver}/pfDeviceID": _string(facts.pf_device_id),
        f"{driver}/pciAddress": _string(facts.pci_address),
        f"{driver}/PFName": _string(facts.pf_name),
        f"{driver}/EswitchMode": _string(facts.eswitch_mode),
        f"{driver}/vfID": _int(facts.vf_index),
        f"{driver}/pfPciAddress": _string(facts.pf_pci_address),
        f"{driver}/linkType": _string(facts.link_type),
        f"{driver}/rdmaCapable": {"bool": facts.rdma_capable},
        f"{MULTUS_PREFIX}/deviceID": _string(facts.pci_address),
        f"{MULTUS_PREFIX}/resourceName": _string(facts.resource_name),
        f"{STANDARD_PREFIX}/pciBusID": _string(facts.pci_address),
        f"{DRANET_PREFIX}/numaNode": _int(facts.numa_node),
    }
    if facts.pcie_root:
        attributes[f"{STANDARD_PREFIX}/pcieRoot"] = _string(facts.pcie_root)
    return attributes


def slice_device(facts: VfFacts, driver: str, *, healthy: bool, taint_unhealthy: bool) -> dict[str, object] | None:
    """The slice's entry for a VF; None when it is unhealthy and withdrawn rather than tainted."""
    device: dict[str, object] = {"name": device_name(facts.pci_address),
                                 "attributes": device_attributes(facts, driver)}
    if healthy:
        return device
    if not taint_unhealthy:
        return None
    device["taints"] = [{"key": f"{driver}/{UNHEALTHY_TAINT}", "value": "PFLinkDown", "effect": "NoSchedule"}]
    return device


def slice_name(node_name: str, driver: str, pf_pci_address: str) -> str:
    name = f"{node_name}-{driver}-{device_name(pf_pci_address)}".lower()
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[:_MAX_NAME - 17]}-{digest}"


def build_slices(node_name: str, driver: str, devices: Iterable[VfFacts], health: Mapping[str, bool], *,
                 generations: Mapping[str, int] | None = None,
                 taint_unhealthy: bool = False) -> list[dict[str, object]]:
    """The ResourceSlices of every PF pool, devices in name order: one slice per pool, or several
    (``resourceSliceCount``) when a PF has more VFs than the API allows in one slice (128; 64 when
    devices may carry taints). `health` is keyed by PCI address (absent: healthy); `generations`
    by pool name (absent: 1), the same for every slice of a pool."""
    by_pf: dict[str, list[VfFacts]] = {}
    for facts in devices:
        by_pf.setdefault(facts.pf_pci_address, []).append(facts)
    limit = MAX_DEVICES_WITH_TAINTS if taint_unhealthy else MAX_DEVICES_PER_SLICE
    slices: list[dict[str, object]] = []
    for pf_address in sorted(by_pf):
        pool = pool_name(node_name, pf_address)
        entries = [slice_device(f, driver, healthy=health.get(f.pci_address, True), taint_unhealthy=taint_unhealthy)
                   for f in sorted(by_pf[pf_address], key=lambda f: f.pci_address)]
        offered = [e for e in entries if e is not None]
        chunks = [offered[i:i + limit] for i in range(0, len(offered), limit)] or [[]]
        base = slice_name(node_name, driver, pf_address)
        for i, chunk in enumerate(chunks):
            slices.append({
                "apiVersion": API_VERSION, "kind": "ResourceSlice",
                "metadata": {"name": base if i == 0 else _numbered(base, i)},
                "spec": {"driver": driver, "nodeName": node_name,
                         "pool": {"name": pool, "generation": (generations or {}).get(pool, 1),
                                  "resourceSliceCount": len(chunks)},
                         "devices": chunk},
            })
    return slices


def _numbered(name: str, i: int) -> str:
    suffix = f"-{i}"
    return name[:_MAX_NAME - len(suffix)] + suffix
