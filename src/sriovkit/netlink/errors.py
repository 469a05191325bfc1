"""Typed netlink failures: errno is translated here, once, and nowhere else.

Callers act on the class (a refused VF setting, a name already taken, a link
that is gone), never on message text.
"""

from __future__ import annotations

import errno

from sriovkit.errors import SriovkitError


class NetlinkError(SriovkitError):
    """A netlink request the kernel (or what stands in for it) refused."""

    def __init__(self, what: str, reason: str, code: int | None = None) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason
        self.errno = code


class LinkNotFoundError(NetlinkError):
    """No such interface (ENODEV), or it vanished during the request."""


class NameInUseError(NetlinkError):
    """The interface name is already taken in the target namespace (EEXIST)."""


class NotSupportedError(NetlinkError):
    """The driver or NIC does not support this setting (EOPNOTSUPP)."""


class InvalidValueError(NetlinkError):
    """The kernel rejected a value (EINVAL, ERANGE)."""


class BusyError(NetlinkError):
    """The device is busy (EBUSY) or the request should be retried (EAGAIN)."""


class NamespaceError(NetlinkError):
    """A network namespace could not be entered or does not exist."""


_BY_ERRNO: dict[int, type[NetlinkError]] = {
    errno.ENODEV: LinkNotFoundError,
    errno.ENOENT: LinkNotFoundError,
    errno.EEXIST: NameInUseError,
    errno.ENOTEMPTY: NameInUseError,
    errno.EOPNOTSUPP: NotSupportedError,
    errno.EINVAL: InvalidValueError,
    errno.ERANGE: InvalidValueError,
    errno.EBUSY: BusyError,
    errno.EAGAIN: BusyError,
}


def from_errno(code: int, what: str) -> NetlinkError:
    """The typed error for a kernel errno, with the kernel's own words as reason."""
    cls = _BY_ERRNO.get(code, NetlinkError)
    return cls(what, f"{errno.errorcode.get(code, str(code))} ({_strerror(code)})", code)


def _strerror(code: int) -> str:
    import os

    return os.strerror(code)
