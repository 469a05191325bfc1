"""host-local's data dir, as the tests read it."""

from __future__ import annotations

from pathlib import Path


def ipam_allocations(ipam_dir: Path) -> list[str]:
    """host-local's reservations, `<network>/<address>` (one file each; `lock` and
    `last_reserved_ip.*` are its bookkeeping)."""
    if not ipam_dir.exists():
        return []
    return sorted(str(p.relative_to(ipam_dir)) for p in ipam_dir.rglob("*")
                  if p.is_file() and p.name != "lock" and not p.name.startswith("last_reserved_ip"))
