"""The reliability suite's report (its fixtures, `node_factory`/`node` and `netns`, are the shared
ones of tests/support/fixtures.py)."""

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the reliability scenarios tried, in every CI log (passing tests' output is captured)."""
    from tests.reliability.scenarios import REPORTED

    if REPORTED:
        terminalreporter.section("reliability: cases tried")
        for line in REPORTED:
            terminalreporter.write_line(line)
