"""Waiting for something another process, thread or the kernel does: one bounded poll for all suites."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], *, timeout: float, interval: float = 0.05,
             ignoring: tuple[type[BaseException], ...] = (),
             error: type[Exception] = AssertionError) -> T:
    """`check()`'s first truthy answer, asked every `interval` s; after `timeout` s raises `error`
    naming `what` and the last answer. An exception in `ignoring` (e.g. a server not listening yet)
    counts as an answer that is not yet right; any other goes through. `check` is always asked once
    more after the deadline has passed, so a slow machine fails only on what it saw late."""
    deadline = time.monotonic() + timeout
    while True:
        late = time.monotonic() > deadline
        try:
            answer = check()
        except ignoring as exc:
            last: object = exc
        else:
            if answer:
                return answer
            last = answer
        if late:
            raise error(f"timed out waiting for {what} ({timeout:g} s; last: {last!r})")
        time.sleep(interval)
