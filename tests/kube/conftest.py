"""One real single-node Kubernetes for the session (tests/kube/cluster.py), with sriovkit
installed from its image by its chart; brought down at the end of the session even when tests
fail. Where the node's upstream parts cannot be built (no root, no Go toolchain, the Go module
proxy unreachable: `cluster.cannot_build_here`, `CannotBuildHere`) the tests skip, naming why. Our
own parts failing (the image from deploy/Dockerfile, the chart, the bring-up) fail them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.cluster import CACHE, CannotBuildHere, Cluster, cannot_build_here
from tests.kube.helpers import Kube


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the first test's setup includes building Kubernetes on a fresh machine (cached afterwards)
    here = os.path.dirname(__file__)
    ours = [item for item in items if str(item.path).startswith(here + os.sep)]
    for item in ours:
        item.add_marker(pytest.mark.root)
        item.add_marker(pytest.mark.timeout(5400))
    # the real node's tests run last in a whole-suite run (`./dev test`): the session's cluster is
    # then up only while they run, not beside every other suite's timing-sensitive tests
    others = [item for item in items if not str(item.path).startswith(here + os.sep)]
    items[:] = others + ours


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    reason = cannot_build_here()
    if reason:
        pytest.skip(f"tests/kube: the real node cannot be built here: {reason}")
    reuse = os.environ.get("SRIOVKIT_KUBE_REUSE")  # a cluster already up (./dev kube up): kept after
    if reuse:
        node = Cluster(Path(reuse))
        if not node.healthy():
            pytest.fail(f"SRIOVKIT_KUBE_REUSE={reuse}: no cluster up there")
        yield node
        return
    node = Cluster(CACHE / f"test-{os.getpid()}")
    try:
        try:
            node.up()
        except CannotBuildHere as exc:
            pytest.skip(f"tests/kube: the real node cannot be built here: {exc}")
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
