"""6. A second agent on a node where one runs: it refuses with one line and changes nothing;
the first keeps its sockets and port. A dead agent's leftover sockets are taken over."""


from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sriovkit.shim.client import AgentUnreachable, call_agent
from sriovkit.sim import host as sim
from tests.reliability.scenarios.rig import Outcome
from tests.support.endpoints import free_port

SECOND_AGENT_CASES = ("same-everything", "other-cni-socket", "other-port", "other-port-and-socket")


@contextlib.contextmanager
def agent_site() -> Iterator[Path]:
    """A simulated host and a config for real `sriovctl agent` processes (a short path: socket
    paths stay under 108 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="ag2", dir="/tmp"))
    sim.create(root / "host", {"pfs": [{"name": "agtwo0", "numVfs": 2}]})
    (root / "config.json").write_text(json.dumps({"resourceList": [
        {"resourceName": "two", "selectors": {"drivers": ["iavf"]}}]}))
    try:
        yield root
    finally:
        sim.destroy(root / "host")
        shutil.rmtree(root, ignore_errors=True)


def agent_argv(root: Path, *, cni: str = "run/cni.sock", port: int) -> list[str]:
    return [sys.executable, "-m", "sriovkit", "agent", "--config-file", str(root / "config.json"),
            "--host-root", str(root / "host"), "--device-plugin-dir", str(root / "dp"),
            "--devinfo-dir", str(root / "devinfo"), "--cni-socket", str(root / cni),
            "--cni-state-dir", str(root / "state"), "--metrics-address", f"127.0.0.1:{port}"]


@contextlib.contextmanager
def running_agent(argv: list[str], ready: list[Path]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not all(p.exists() for p in ready):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the first agent did not start"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def identity(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def serves(cni: Path, dp: Path, port: int) -> bool:
    out, code = call_agent(str(cni), {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}', reply_timeout=30)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(dp))
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass
    return code == 0 and b"supportedVersions" in out



def second_agent_case(site: Path, second: str) -> list[str]:
    """Start a first agent, then a second one configured as `second` says; what went wrong."""
    problems: list[str] = []
    port = free_port()
    cni, dp = site / "run" / "cni.sock", site / "dp" / "intel.com_two.sock"
    with running_agent(agent_argv(site, port=port), [cni, dp]) as first:
        before = {p: identity(p) for p in (cni, dp)}
        other_cni = "run/cni.sock" if second in ("same-everything", "other-port") else "run2/cni.sock"
        other_port = port if second in ("same-everything", "other-cni-socket") else free_port()
        proc = subprocess.run(agent_argv(site, cni=other_cni, port=other_port), capture_output=True, text=True,
                              timeout=120)
        lines = proc.stderr.strip().splitlines() or [""]
        if proc.returncode != 2 or not lines[-1].startswith("sriovctl: cannot start the agent: "):
            problems.append(f"second agent: exit {proc.returncode}, last line {lines[-1][:200]!r}")
        if "Traceback" in proc.stderr:
            problems.append("second agent printed a traceback")
        if first.poll() is not None:
            problems.append("the first agent died")
        if {p: identity(p) for p in (cni, dp) if p.exists()} != before:
            problems.append("the first agent's sockets were removed or replaced")
        try:
            if not serves(cni, dp, port):
                problems.append("the first agent no longer answers")
        except (OSError, AgentUnreachable) as exc:
            problems.append(f"the first agent no longer answers: {exc}")
        if other_cni != "run/cni.sock" and (site / other_cni).exists():
            problems.append("the second agent left its CNI socket behind")
        if sorted(p.name for p in (site / "dp").iterdir()) != ["intel.com_two.sock"]:
            problems.append(f"device-plugin dir now holds {sorted(p.name for p in (site / 'dp').iterdir())}")
    return problems


def second_agent(tmp: Path) -> Outcome:
    """The reliability row: every kind of second agent refused, the first untouched."""
    out = Outcome("second agent: refused, the first untouched")
    for case in SECOND_AGENT_CASES:
        out.tried += 1
        with agent_site() as site:
            for problem in second_agent_case(site, case):
                out.fail(case, problem)
    return out
