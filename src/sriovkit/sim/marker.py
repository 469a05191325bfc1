"""Whether a host root is a simulated host: the one marker check, without loading the simulator.

`sriovkit.sim.host` (pydantic, yaml) writes the marker; the entry points' composition roots
(`sriovkit.commands.ports`) only ask whether it is there, which on a real node it never is.
"""

from __future__ import annotations

import os

SIM_MARKER = ".sriovkit-sim"


def is_simulated(root: str | os.PathLike[str]) -> bool:
    """Whether `root` is a tree the simulator made (a real host root never is)."""
    return os.path.isfile(os.path.join(root, SIM_MARKER))
