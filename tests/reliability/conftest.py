"""The CNI suite's fixtures, for the reliability tests: `node_factory`/`node` (a veth-backed
simulated node, leak-checked after the test) and `netns` (pods' namespaces, removed after)."""

from typing import Any

from tests.integration.cni.conftest import node, node_factory
from tests.integration.conftest import netns

__all__ = ["netns", "node", "node_factory"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the reliability scenarios tried, in every CI log (passing tests' output is captured)."""
    from tests.reliability.scenarios import REPORTED

    if REPORTED:
        terminalreporter.section("reliability: cases tried")
        for line in REPORTED:
            terminalreporter.write_line(line)
