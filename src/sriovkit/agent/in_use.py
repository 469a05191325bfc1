"""Which VFs pods hold right now: what provisioning must never remove or rebind.

Two sources, because each misses a moment the other sees: the kubelet's podresources API knows a
VF from the instant the device plugin allocated it (before any CNI call), and the CNI's records
know a VF attached to a pod even while the kubelet is restarting. With the DRA driver, a third:
its checkpoint of prepared claims (podresources names DRA devices by pool and name, not address).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sriovkit.cni.state import StateStore
from sriovkit.errors import InUseUnknown

__all__ = ["InUseUnknown", "attached_by_cni", "devices_in_use"]
log = logging.getLogger(__name__)
_RPC_TIMEOUT_S = 5.0


def devices_in_use(pod_resources_socket: Path | None, cni_state_dir: str, *,
                   dra_state_dir: Path | None = None) -> set[str]:
    """PCI addresses (device IDs) held by pods. A kubelet socket that does not exist means no kubelet
    runs (nothing it assigned can be in use beyond what the CNI attached); one that does not answer
    raises `InUseUnknown`, so callers do not act on a guess."""
    held = attached_by_cni(cni_state_dir)
    if dra_state_dir is not None:
        from sriovkit.dra.checkpoint import Checkpoint

        held |= Checkpoint(dra_state_dir).held_vfs()
    if pod_resources_socket is not None and pod_resources_socket.exists():
        held |= _assigned_by_kubelet(pod_resources_socket)
    return held


def attached_by_cni(cni_state_dir: str) -> set[str]:
    """PCI addresses the CNI's records (an ADD done or in progress) hold: until the pod's DEL."""
    return {record.pci_address for record in StateStore(cni_state_dir).records(pending=True)}


def _assigned_by_kubelet(socket_path: Path) -> set[str]:
    from sriovkit.kubeapi.podresources import PodResourcesClient, PodResourcesError

    try:
        assignments = PodResourcesClient(socket_path, timeout_s=_RPC_TIMEOUT_S).assignments()
    except PodResourcesError as exc:
        raise InUseUnknown(str(exc)) from None
    return {device_id for a in assignments for device_id in a.device_ids}
