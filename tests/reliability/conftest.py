"""The CNI suite's fixtures, for the reliability tests: `node_factory`/`node` (a veth-backed
simulated node, leak-checked after the test) and `netns` (pods' namespaces, removed after)."""

from tests.integration.cni.conftest import node, node_factory
from tests.integration.conftest import netns

__all__ = ["netns", "node", "node_factory"]
