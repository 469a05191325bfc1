"""Errors shared across parts, and the root every sriovkit error derives from.

Every exception sriovkit raises on purpose is a `SriovkitError`: a caller at the top of a call
(an entry point, a worker loop) tells "a failure we know and describe" (`except SriovkitError`)
from a bug. Where a builtin base carries meaning to callers outside sriovkit (a `ValueError` for
a bad value, an `OSError` with an errno), a class keeps it beside the root. Callers catch the
specific class, never a builtin standing for it, and never match on the message text: what a
caller needs to decide on is an attribute (`problems`, `code`, `lines`). The one exception is the
stdlib-only `sriov` shim script (`shim/client.py`, with `shim/wire.py` written into it), which must
not import sriovkit.
"""

from __future__ import annotations

from collections.abc import Sequence


class SriovkitError(Exception):
    """The root of every error sriovkit raises on purpose."""


class UserError(SriovkitError):
    """An error the user caused (bad flag, file or value): `lines` are printed as
    they are, one per problem, and the command exits with status 2."""

    def __init__(self, lines: Sequence[str] | str) -> None:
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class InUseUnknown(SriovkitError):
    """Which devices pods hold cannot be told now (e.g. the kubelet is there but did not answer):
    whoever would remove or rebind a VF must not act on a guess, and tries again later."""
