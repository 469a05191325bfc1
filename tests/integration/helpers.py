"""Helpers for root tests (importable: `from tests.integration.helpers import ...`)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

NETNS_DIR = "/var/run/netns"
NetnsFactory = Callable[[], str]  # the `netns` fixture: each call makes a namespace, returns its path


def unique_name(prefix: str, length: int = 6) -> str:
    """`prefix` plus random hex; keep the total within 15 characters for interfaces."""
    return f"{prefix}{secrets.token_hex(8)[:length]}"


def veth_host_spec(prefix: str, num_vfs: int = 4, **pf: Any) -> dict[str, Any]:
    """A spec with one PF named `prefix` (<= 8 chars keeps VF names "<pf>v<index>" within 15)."""
    return {"pfs": [{"name": prefix, "numVfs": num_vfs, "totalVfs": max(num_vfs, 8), **pf}]}
