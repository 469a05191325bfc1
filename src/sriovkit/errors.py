"""Errors shared across parts."""

from __future__ import annotations

from collections.abc import Sequence


class UserError(Exception):
    """An error the user caused (bad flag, file or value): `lines` are printed as
    they are, one per problem, and the command exits with status 2."""

    def __init__(self, lines: Sequence[str] | str) -> None:
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))
