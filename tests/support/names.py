"""Random names: several test runs share this machine, so nothing a test makes has a fixed name."""

from __future__ import annotations

import secrets
from collections.abc import Callable

NETNS_DIR = "/var/run/netns"
NetnsFactory = Callable[[], str]  # the `netns` fixture: each call makes a namespace, returns its path


def unique_name(prefix: str, length: int = 6) -> str:
    """`prefix` plus random hex; keep the total within 15 characters for interfaces."""
    return f"{prefix}{secrets.token_hex(8)[:length]}"


def random_id() -> str:
    """A container ID as runtimes make them (64 hex digits)."""
    return secrets.token_hex(32)
