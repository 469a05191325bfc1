"""The driver against a peer built from the kubelet's own generated API packages (k8s.io/kubelet at
the version pinned in kubeletpeer/go.mod, through the Go module proxy): registration, prepare and
unprepare in both DRAPlugin versions, and the health stream, on the real wire format."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sriovkit.host.discover import discover_device
from tests.support.dra_node import DRIVER, NODE_NAME, PF0_VF2, DraNode, vf_config

PEER_SRC = Path(__file__).resolve().parent / "kubeletpeer"
CACHE = Path(os.environ.get("SRIOVKIT_DRA_PEER_CACHE", "/var/tmp/sriovkit-dra-peer"))
POOL0 = f"{NODE_NAME}/0000-10-00-0"


def _go() -> str:
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go", "/usr/lib/go-1.23/bin/go"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no Go toolchain: ./dev setup installs one (it builds the native sriov executable too)")


@pytest.fixture(scope="module")
def peer() -> Path:
    key = hashlib.sha256(b"".join((PEER_SRC / f).read_bytes() for f in ("go.mod", "go.sum", "main.go")))
    out = CACHE / key.hexdigest()[:16] / "kubeletpeer"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOMODCACHE": str(CACHE / "gomod"), "GOCACHE": str(CACHE / "gocache"),
               "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0", "GOTOOLCHAIN": "auto"}
        build = subprocess.run([_go(), "build", "-trimpath", "-o", str(out) + ".tmp", "."], cwd=PEER_SRC, env=env,
                               capture_output=True, text=True, timeout=900)
        assert build.returncode == 0, build.stderr
        os.replace(str(out) + ".tmp", out)
    return out


def call(peer: Path, *args: str) -> dict:
    proc = subprocess.run([str(peer), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_kubelets_own_client_code_registers_prepares_and_watches_health(dra_node: DraNode, peer: Path):
    dra_node.start_agent()
    info = call(peer, "-registration", str(dra_node.root / "reg" / f"{DRIVER}-reg.sock"), "register")
    assert info == {"type": "DRAPlugin", "name": DRIVER,
                    "endpoint": str(dra_node.root / "plugins" / DRIVER / "dra.sock"),
                    "versions": ["v1.DRAPlugin", "v1beta1.DRAPlugin"]}
    endpoint = info["endpoint"]
    for version in ("v1", "v1beta1"):
        ns, uid, name = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(driver="vfio-pci")])
        missing = "default/0000-missing/nope"
        prepared = call(peer, "-endpoint", endpoint, "-version", version, "prepare", f"{ns}/{uid}/{name}", missing)
        assert prepared[uid] == {"devices": [{"requests": ["vf"], "pool": POOL0, "device": "0000-11-00-2",
                                              "cdi": [f"{DRIVER}/claim-{uid}={PF0_VF2}"]}],
                                 "error": ""}
        assert prepared["0000-missing"]["devices"] is None and "404" in prepared["0000-missing"]["error"]
        assert discover_device(dra_node.sysfs, PF0_VF2).driver == "vfio-pci"
        gone = call(peer, "-endpoint", endpoint, "-version", version, "unprepare", f"{ns}/{uid}/{name}")
        assert gone == {uid: {"devices": None, "error": ""}}
        assert discover_device(dra_node.sysfs, PF0_VF2).driver == "iavf"
    health = call(peer, "-endpoint", endpoint, "health")
    assert health == {f"{POOL0}/0000-11-00-2": "HEALTHY", f"{NODE_NAME}/0000-12-00-0/0000-13-00-0": "HEALTHY",
                      f"{NODE_NAME}/0000-12-00-0/0000-13-00-1": "HEALTHY"}
