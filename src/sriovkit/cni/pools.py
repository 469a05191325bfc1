"""The pools the running node agent offers, published where the CNI can read them.

A VF the device plugin or the DRA driver may hand to a pod must never be picked by the CNI itself
(`sriovkit.cni.pick`, the seeds' mode without a device plugin). The agent writes, after every
rediscovery, ``<cni state dir>/.agent-pools.json``: ``{"format": 1, "pools": {name: [device IDs]}}``
(a dot file: never taken for an attachment record), and removes it when it stops.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.host.statefile import write_json_atomic

POOLS_FILE = ".agent-pools.json"
_FORMAT = 1


def pools_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / POOLS_FILE


def publish_pools(path: Path, pools: Mapping[str, Iterable[str]]) -> None:
    document = {"format": _FORMAT, "pools": {name: sorted(ids) for name, ids in sorted(pools.items())}}
    write_json_atomic(path, document, durable=False)  # a reboot restarts the agent, which writes it anew


def withdraw_pools(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def pooled_devices(path: Path) -> dict[str, str]:
    """Device ID -> the pool offering it; {} when no agent publishes. A file we cannot read
    fails the pick: choosing a VF a pool offers would hand it out twice."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CniError(ErrorCode.IO_FAILURE, f"the agent's pools file {path} is unreadable",
                       exc.strerror or str(exc)) from None
    try:
        with os.fdopen(fd) as f:
            document = json.load(f)
        pools = document["pools"]
        return {str(dev): str(name) for name, ids in pools.items() for dev in ids}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CniError(ErrorCode.IO_FAILURE, f"the agent's pools file {path} is not a pools document",
                       str(exc)) from None
