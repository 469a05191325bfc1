"""A node for the hot-plug controller: our own containerd (pods created over CRI get real
sandboxes and network namespaces), the fake Kubernetes API, a CNI bin dir with the plain
plugins and our `sriov` plugin, and directories standing for the kubelet's and OVS's.

Everything is made per test under random names and removed afterwards; containerd is
started once per session and stopped at its end.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.kubesim.apiserver import FakeKubeApi
from tests.cnirt.runtime import Containerd
from tests.support.hotplug_site import Site, cni_bin_dir
from tests.support.leaks import host_leaks, host_marks

pytestmark = pytest.mark.root


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    runtime = Containerd()
    runtime.up()
    yield runtime
    runtime.down()


@pytest.fixture
def site(containerd: Containerd, tmp_path: Path) -> Iterator[Site]:
    marks = host_marks()
    kube = FakeKubeApi()
    kube.start()
    site = Site(tmp_path, Path(tempfile.mkdtemp(prefix="skhp", dir="/tmp")), kube, containerd, cni_bin_dir(tmp_path))
    try:
        yield site
    finally:
        for controller in site.controllers:
            controller.stop()
        for sandbox in site.sandboxes.values():
            with contextlib.suppress(Exception):
                containerd.remove_pod(sandbox)
        kube.stop()
        for bridge in site.bridges:
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
        for target in site.dirs.ovs_run_dir.glob("vhost_sockets/*/*"):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
        left = host_leaks(marks, interfaces=site.bridges, dirs=[site.short, tmp_path])
        shutil.rmtree(site.short, ignore_errors=True)
    assert left == [], f"left behind: {left}"
