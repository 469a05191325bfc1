"""The Device Information document (Network Plumbing WG Device Info Spec v1.1.0): one builder.

The device plugin writes it per allocated device, the CNI plugin at Multus'
``CNIDeviceInfoFile``, hot-plug into the pod's network-status ``device-info``; all three say
the same thing about a PCI function, so they build it here. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

VERSION = "1.1.0"


def pci_device_info(pci_address: str, *, pf_pci_address: str | None = None, rdma_device: str | None = None,
                    vhost_net: str | None = None) -> dict[str, Any]:
    """The document for a PCI function; the optional fields are left out when unknown or empty."""
    pci: dict[str, str] = {"pci-address": pci_address}
    if pf_pci_address:
        pci["pf-pci-address"] = pf_pci_address
    if rdma_device:
        pci["rdma-device"] = rdma_device
    if vhost_net:
        pci["vhost-net"] = vhost_net
    return {"type": "pci", "version": VERSION, "pci": pci}
