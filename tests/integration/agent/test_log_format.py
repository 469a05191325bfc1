"""`sriovctl agent --log-format json`: every line the agent writes is one JSON object (time, level,
logger, msg and the context fields), a CNI call's lines name the pod, container, interface, PCI
address and netns; the default stays text lines."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.kubesim import Kubelet
from sriovkit.shim.client import call_agent
from sriovkit.sim import host as sim
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root
PFS = [{"name": "enp1s0f0", "numVfs": 2}]
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0"


@pytest.fixture
def site() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="logfmt", dir="/tmp"))
    host = sim.create(root / "host", {"pfs": PFS})
    (root / "config.json").write_text(json.dumps({"resourceList": [{"resourceName": "net"}]}))
    (root / "vf").write_text(host.vf_address(0, 1))
    kubelet = Kubelet(root / "dp")
    kubelet.start()
    try:
        yield root
    finally:
        kubelet.stop()
        shutil.rmtree(root, ignore_errors=True)


def _run_agent(root: Path, *extra: str, calls: list[tuple[dict[str, str], bytes]]) -> tuple[list[str], list[int]]:
    """Start the agent, make `calls` through its CNI socket, stop it; its stderr lines and the calls' codes."""
    socket_path = root / "run" / "cni.sock"
    cmd = [sys.executable, "-m", "sriovkit", "agent", "--config-file", str(root / "config.json"),
           "--host-root", str(root / "host"), "--device-plugin-dir", str(root / "dp"),
           "--devinfo-dir", str(root / "devinfo"), "--cni-socket", str(socket_path),
           "--cni-state-dir", str(root / "cni-state"), "--metrics-address", "", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    codes = []
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the agent did not serve its CNI socket"
            time.sleep(0.05)
        for env, stdin in calls:
            codes.append(call_agent(str(socket_path), env, stdin)[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err.splitlines(), codes


def _failing_add(root: Path, netns: str) -> tuple[dict[str, str], bytes]:
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": netns, "CNI_IFNAME": "net1",
           "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": POD_ARGS}
    conf = {"cniVersion": "1.0.0", "name": "sriov-a", "type": "sriov", "deviceID": (root / "vf").read_text(),
            "vlan": 5000}
    return env, json.dumps(conf).encode()


def test_json_format_one_object_per_line_with_the_call_context(site: Path, netns: NetnsFactory) -> None:
    pod = netns()
    lines, codes = _run_agent(site, "--log-format", "json", calls=[_failing_add(site, pod)])
    assert codes == [1]
    records = [json.loads(line) for line in lines]  # every line, the agent's own included, is JSON
    assert len(records) > 2 and all({"time", "level", "logger", "msg"} <= r.keys() for r in records)
    assert any(r["msg"].startswith("agent started") for r in records)
    (failure,) = [r for r in records if r["logger"] == "sriovkit.cni" and r["level"] == "error"]
    assert failure["msg"] == "failed" and failure["code"] == 7 and "vlan 5000" in failure["details"]
    assert (failure["pod"], failure["container"], failure["ifname"], failure["netns"], failure["pci"]) == (
        "team-a/web-0", "c0ffee", "net1", pod, (site / "vf").read_text())


def test_text_stays_the_default(site: Path, netns: NetnsFactory) -> None:
    pod = netns()
    lines, codes = _run_agent(site, calls=[_failing_add(site, pod)])
    assert codes == [1]
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    (failure,) = [ln for ln in lines if " ERROR sriovkit.cni " in ln]
    assert "event=failed" in failure and "pod=team-a/web-0" in failure and f"netns={pod}" in failure


def test_an_unknown_log_format_is_one_line_naming_the_flag(site: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sriovkit", "agent", "--config-file", str(site / "config.json"),
                           "--log-format", "yaml"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--log-format" in proc.stderr and "yaml" in proc.stderr and "Traceback" not in proc.stderr
