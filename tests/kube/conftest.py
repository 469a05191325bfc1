"""One real single-node Kubernetes for the session (tests/kube/cluster.py), with sriovkit
installed from its image by its chart; brought down at the end of the session even when tests
fail. A cluster that cannot be built or started fails the tests: it is never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.cluster import CACHE, Cluster
from tests.kube.helpers import Kube


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the first test's setup includes building Kubernetes on a fresh machine (cached afterwards)
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.root)
            item.add_marker(pytest.mark.timeout(5400))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.fail("tests/kube need root (a kubelet, containerd, network namespaces)")
    reuse = os.environ.get("SRIOVKIT_KUBE_REUSE")  # a cluster already up (./dev kube up): kept after
    if reuse:
        node = Cluster(Path(reuse))
        if not node.healthy():
            pytest.fail(f"SRIOVKIT_KUBE_REUSE={reuse}: no cluster up there")
        yield node
        return
    node = Cluster(CACHE / f"test-{os.getpid()}")
    try:
        node.up()
        yield node
    finally:
        node.down()


@pytest.fixture
def kube(cluster: Cluster) -> Iterator[Kube]:
    """The cluster with a namespace of this test's own; its pods and NADs are deleted afterwards."""
    k = Kube.for_test(cluster)
    try:
        yield k
    finally:
        k.cleanup()
