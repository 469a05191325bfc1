"""Which of the pod's own devices an attachment may take (the kubelet's answer comes from
`sriovkit.kubeapi.podresources`)."""

from __future__ import annotations

from collections.abc import Iterable


def free_device(assigned: list[str], in_use: Iterable[str]) -> str | None:
    """The first device the kubelet gave the pod that none of its attachments uses yet."""
    used = set(in_use)
    return next((d for d in assigned if d not in used), None)
