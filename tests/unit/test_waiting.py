"""The suites' one bounded poll (tests/support/waiting.py): the first truthy answer, a failure that
names what it waited for, ignored exceptions as "not yet", and one more look after a slow answer."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.support.waiting import wait_for


def answers(*values: object) -> Callable[[], object]:
    """A check answering `values` in turn (the last one from then on)."""
    left = list(values)
    return lambda: left.pop(0) if len(left) > 1 else left[0]


def test_the_first_truthy_answer_is_returned() -> None:
    assert wait_for("the third answer", answers(None, 0, "ready", "later"), timeout=30, interval=0) == "ready"


def test_a_timeout_names_what_was_waited_for_and_the_last_answer() -> None:
    with pytest.raises(AssertionError, match=r"timed out waiting for the pool \(0 s; last: \[\]\)"):
        wait_for("the pool", answers([]), timeout=0, interval=0)


def test_the_error_type_is_the_callers() -> None:
    class Late(AssertionError):
        pass

    with pytest.raises(Late):
        wait_for("x", answers(False), timeout=0, error=Late)


def test_an_ignored_exception_is_not_yet_and_shows_as_the_last_answer() -> None:
    tries: list[object] = [ConnectionRefusedError("not listening"), "up"]

    def listening_later() -> object:
        answer = tries.pop(0) if len(tries) > 1 else tries[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for("a server", listening_later, timeout=30, interval=0, ignoring=(ConnectionError,)) == "up"
    tries[:] = [ConnectionRefusedError("not listening")]
    with pytest.raises(AssertionError, match="last: ConnectionRefusedError"):
        wait_for("a server", listening_later, timeout=0, ignoring=(ConnectionError,))


def test_any_other_exception_goes_through() -> None:
    def broken() -> object:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        wait_for("a server", broken, timeout=30, ignoring=(ConnectionError,))


def test_an_answer_that_came_late_is_asked_again_before_failing() -> None:
    calls: list[int] = []

    def slow_then_ready() -> bool:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.05)  # past the deadline, as on a loaded machine
            return False
        return True

    assert wait_for("a slow check", slow_then_ready, timeout=0.01, interval=0) is True
    assert len(calls) == 2
