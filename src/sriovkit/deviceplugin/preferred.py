"""Which devices to offer for `GetPreferredAllocation`: pure and deterministic.

Order of preference: the kubelet's ``mustInclude`` devices; then devices on
one NUMA node (the node of the must-include devices, else one that can hold
the whole request); then the pool's ``allocatePolicy``: ``packed`` fills one
PF before touching the next, the fullest one that can hold the whole request
(keeping other PFs whole for later large requests), ``spread`` takes from the PFs in turn (balancing load over PFs).
Ties always fall back to the device ID, so the same input gives the same answer.

Devices a CNI attachment still holds (``held``) come after every other one: the kubelet offers a
device again as soon as its pod is gone from the API server, before the runtime has torn down that
pod's sandbox, and an ADD on it fails ("already attached") until the sandbox's DEL comes; the
kubelet retries the new pod only after a backoff of seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sriovkit.resources.config import AllocatePolicy


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a device sits: its NUMA node (None: unknown) and its PF (None: not a VF)."""

    numa_node: int | None
    pf: str | None


def preferred_allocation(
    available: Sequence[str],
    must_include: Sequence[str],
    size: int,
    placements: Mapping[str, Placement],
    policy: AllocatePolicy = AllocatePolicy.PACKED,
    held: Collection[str] = frozenset(),
) -> list[str]:
    chosen = list(dict.fromkeys(must_include))
    if size <= len(chosen):
        return chosen
    taken = set(chosen)
    # devices the pool does not know (or no longer has) go last: the kubelet may
    # still pick them, but we never prefer them; before them, the devices still attached
    known = sorted(d for d in dict.fromkeys(available) if d not in taken and d in placements)
    unknown = sorted(d for d in dict.fromkeys(available) if d not in taken and d not in placements)
    for candidates in ([d for d in known if d not in held], [d for d in known if d in held]):
        need = size - len(chosen)
        if need <= 0:
            break
        chosen += _by_numa(candidates, chosen, need, placements, policy)[:need]
    if len(chosen) < size:
        chosen += unknown[: size - len(chosen)]
    return chosen


def _by_numa(
    candidates: list[str], chosen: list[str], need: int, placements: Mapping[str, Placement], policy: AllocatePolicy
) -> list[str]:
    groups: dict[int | None, list[str]] = {}
    for dev in candidates:
        groups.setdefault(placements[dev].numa_node, []).append(dev)
    order = _numa_order(groups, chosen, need, placements, policy)
    used_pfs = Counter(placements[d].pf for d in chosen if d in placements)
    result: list[str] = []
    for node in order:
        result += _by_policy(groups[node], placements, policy, used_pfs, need - len(result))
    return result


def _numa_order(
    groups: dict[int | None, list[str]],
    chosen: list[str],
    need: int,
    placements: Mapping[str, Placement],
    policy: AllocatePolicy,
) -> list[int | None]:
    wanted = Counter(placements[d].numa_node for d in chosen if d in placements and placements[d].numa_node is not None)

    def key(node: int | None) -> tuple[int, int, int, int]:
        count = len(groups[node])
        fits = count >= need
        # best fit for packed (keep big nodes whole), most room for spread
        size_key = count if policy is AllocatePolicy.PACKED else -count
        return (-wanted.get(node, 0) if node is not None else 0, 0 if fits else 1,
                size_key if fits else -count, node if node is not None else 1 << 30)

    return sorted(groups, key=key)


def _by_policy(
    devices: list[str], placements: Mapping[str, Placement], policy: AllocatePolicy, used_pfs: Counter[str | None],
    need: int,
) -> list[str]:
    per_pf: dict[str | None, list[str]] = {}
    for dev in devices:
        per_pf.setdefault(placements[dev].pf, []).append(dev)
    if policy is AllocatePolicy.PACKED:
        # PFs already used by this request first; then the fullest PF that still holds the whole
        # rest of the request (so it lands on one PF and the emptier PFs stay whole); when none
        # does, the fullest PFs first
        def packed_key(pf: str | None) -> tuple[int, int, int, str]:
            free = len(per_pf[pf])
            return (-used_pfs.get(pf, 0), 0 if free >= need else 1, free, pf or "")

        return [dev for pf in sorted(per_pf, key=packed_key) for dev in per_pf[pf]]
    # spread: least used by this request first, then the emptiest (most free) PF, round robin
    pfs = sorted(per_pf, key=lambda pf: (used_pfs.get(pf, 0), -len(per_pf[pf]), pf or ""))
    result: list[str] = []
    depth = 0
    while len(result) < len(devices):
        for pf in pfs:
            if depth < len(per_pf[pf]):
                result.append(per_pf[pf][depth])
        depth += 1
    return result
