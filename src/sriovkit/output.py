"""Plain-text tables for the CLI and the demo."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sriovkit.pciaddr import function_number


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None or c == "" else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


_PCI = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")


def summarize_ids(ids: Sequence[str], *, max_items: int = 8) -> str:
    """Device IDs for one table cell: runs of consecutive PCI functions as `FIRST-LAST (N)`, at most
    `max_items` entries, then how many more. A pool of 4096 VFs is a few ranges, not a 60 KB line."""
    pci = sorted((_pci_number(i), i) for i in ids if _PCI.match(i))
    other = sorted(i for i in ids if not _PCI.match(i))
    items: list[str] = []
    run: list[tuple[int, str]] = []
    for number, name in pci:
        if run and number != run[-1][0] + 1:
            items += _run_text(run)
            run = []
        run.append((number, name))
    if run:
        items += _run_text(run)
    items += other
    if len(items) > max_items:
        hidden = items[max_items:]
        count = sum(_run_size(i) for i in hidden)
        items = [*items[:max_items], f"... {count} more"]
    return ", ".join(items)


def _pci_number(address: str) -> int:
    number = function_number(address)
    assert number is not None  # only called for what _PCI matched
    return number


def _run_text(run: list[tuple[int, str]]) -> list[str]:
    if len(run) < 3:  # two addresses read better than a range of two
        return [name for _, name in run]
    return [f"{run[0][1]}-{run[-1][1]} ({len(run)})"]


def _run_size(item: str) -> int:
    return int(item.rsplit("(", 1)[1].rstrip(")")) if item.endswith(")") and "-" in item else 1
