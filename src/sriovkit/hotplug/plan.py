"""The reconcile decision: what a pod wants against what it has, as ordered CNI actions.

Pure: the controller feeds it the parsed annotation and what the local record and
network-status say is attached, and runs the actions it returns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sriovkit.hotplug.networks import DesiredAttachment


class Verb(enum.Enum):
    ADD = "ADD"
    DEL = "DEL"


@dataclass(frozen=True, slots=True)
class Action:
    verb: Verb
    network: str  # namespace/name
    interface: str
    desired: DesiredAttachment | None = None  # set for ADD

    def __str__(self) -> str:
        return f"{self.verb.value} {self.network}@{self.interface}"


def plan(desired: Sequence[DesiredAttachment], attached: Mapping[str, str]) -> list[Action]:
    """`attached` maps interface -> network. DELs come first (newest first), then ADDs in annotation order.

    An interface that now names another network is removed and added again; an
    attachment already in place is left alone (changing a selection's mac or ips
    does not re-plug it: remove and re-add the network for that).
    """
    wanted = {d.interface: d for d in desired}
    actions = [Action(Verb.DEL, network, interface)
               for interface, network in reversed(list(attached.items()))
               if interface not in wanted or wanted[interface].network != network]
    actions += [Action(Verb.ADD, d.network, d.interface, d)
                for d in desired if attached.get(d.interface) != d.network]
    return actions


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry `attempt` (1-based): `initial * factor**(attempt-1)`, at most `maximum` seconds."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0

    def delay(self, attempt: int) -> float:
        if attempt < 1:
            return 0.0
        # cap the exponent: past the maximum the power only risks overflow
        exponent = min(attempt - 1, 64)
        return float(min(self.maximum, self.initial * self.factor ** exponent))

    def schedule(self, attempts: int) -> list[float]:
        return [self.delay(n) for n in range(1, attempts + 1)]
