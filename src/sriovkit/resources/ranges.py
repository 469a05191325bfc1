"""VF index ranges as written in `pfNames` / `rootDevices`: ``eth0#1,3,5-9,23``."""

from __future__ import annotations

from sriovkit.errors import SriovkitError

MAX_VF_INDEX = 4095


class RangeError(SriovkitError, ValueError):
    """A malformed range; the message says which part and why."""


def parse_indexed_names(entry: str) -> tuple[str, frozenset[int] | None]:
    """Split ``name#ranges`` into the name and the VF indexes (None when no '#')."""
    name, sep, ranges = entry.partition("#")
    if not sep:
        return entry, None
    return name, parse_ranges(ranges)


def parse_ranges(text: str) -> frozenset[int]:
    if not text.strip():
        raise RangeError("empty VF range after '#'")
    indexes: set[int] = set()
    for part in text.split(","):
        start, dash, end = part.strip().partition("-")
        lo = _index(start, part)
        hi = _index(end, part) if dash else lo
        if hi < lo:
            raise RangeError(f"VF range {part.strip()!r} ends before it starts")
        indexes.update(range(lo, hi + 1))
    return frozenset(indexes)


def _index(text: str, part: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise RangeError(f"VF range part {part.strip()!r} is not a number or a range like 5-9")
    value = int(text)
    if value > MAX_VF_INDEX:
        raise RangeError(f"VF index {value} in {part.strip()!r} is above {MAX_VF_INDEX}")
    return value


def format_ranges(indexes: frozenset[int] | set[int] | list[int]) -> str:
    """The inverse of `parse_ranges`: ``{1, 3, 5, 6, 7}`` -> ``"1,3,5-7"``."""
    ordered = sorted(indexes)
    if not ordered:
        raise RangeError("no VF indexes to format")
    parts: list[str] = []
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)
