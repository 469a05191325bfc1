"""Interface names for the pod's desired secondary networks: the pod's own, else `net1`, `net2`...
by position, as Multus names them (the annotation itself is read by `sriovkit.multus`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sriovkit.multus import NETWORKS_ANNOTATION, NetworkAnnotationError, NetworkSelection


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
