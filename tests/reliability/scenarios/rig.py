"""What every scenario stands on: the outcome record, a veth-backed simulated node, pods' namespaces,
the leak report, the plugin and the agent as processes, shims."""


from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import netns as pyroute2_netns

from sriovkit.cni.plugin import run_cni
from sriovkit.shim.install import ShimSettings, install_shim
from tests.support.cni_host import Node, cni_node, cni_node_teardown
from tests.support.leaks import host_leaks
from tests.support.names import NETNS_DIR, unique_name

LAUNCHER = Path(__file__).resolve().parents[1] / "agent_launcher.py"
PLUGIN = [sys.executable, "-m", "sriovkit.cni.plugin"]
KILLED = -9


REPORTED: list[str] = []  # every outcome's line, for the test session's summary (see conftest.py)


@dataclass
class Outcome:
    scenario: str
    tried: int = 0
    failures: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)

    def fail(self, case: str, why: str) -> None:
        self.failures.append(f"{case}: {why}")

    def merge(self, other: Outcome) -> None:
        self.tried += other.tried
        self.failures += other.failures
        self.leaks += other.leaks

    def line(self) -> str:
        return f"{self.scenario}: tried {self.tried}, failures {len(self.failures)}, leaks {len(self.leaks)}"

    def check(self) -> None:
        """For tests: report what was tried, then fail on any failure or leak."""
        REPORTED.append(self.line())
        assert self.tried > 0, f"{self.scenario}: nothing was tried"
        assert not self.failures and not self.leaks, self.explain()

    def explain(self) -> str:
        return "\n".join([self.line(), *self.failures[:20], *self.leaks[:20]])


# -- the simulated node -----------------------------------------------------------------------

@contextlib.contextmanager
def sim_node(tmp: Path, num_vfs: int = 4, **pf: Any) -> Iterator[Node]:
    """A simulated PF (random name) with veth-backed VFs (the CNI host rig); torn down and
    leak-checked on exit."""
    node = cni_node(tmp, f"rl{secrets.token_hex(3)}", num_vfs, lock_timeout_s=20, **pf)
    try:
        yield node
    finally:
        left = cni_node_teardown(node)
    assert left == [], f"left behind: {left}"


@contextlib.contextmanager
def pods() -> Iterator[PodFactory]:
    """Network namespaces standing for pods; every one made is removed on exit."""
    factory = PodFactory()
    try:
        yield factory
    finally:
        for path in factory.made:
            factory.remove(path)
    left = host_leaks(None, netns=factory.made)
    assert left == [], f"left behind: {left}"


class PodFactory:
    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self) -> str:
        name = unique_name("skrel-", 10)
        pyroute2_netns.create(name)
        path = f"{NETNS_DIR}/{name}"
        self.made.append(path)
        return path

    @staticmethod
    def remove(path: str) -> None:
        with contextlib.suppress(OSError, FileNotFoundError):
            pyroute2_netns.remove(os.path.basename(path))


def process_env(node: Node, env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, "SRIOVKIT_HOST_ROOT": str(node.host.root), "SRIOVKIT_CNI_STATE_DIR": str(node.state_dir),
            "SRIOVKIT_CNI_DEVINFO_DIR": node.ctx.devinfo_dir, "SRIOVKIT_CNI_LOG_DIR": node.ctx.log_dir,
            "SRIOVKIT_CNI_LOCK_TIMEOUT": "20", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}


def execute(argv: list[str], env: dict[str, str], conf: dict[str, Any] | bytes,
            timeout: float = 120) -> tuple[bytes, int]:
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=timeout, check=False)
    return proc.stdout, proc.returncode


def answer(out: bytes) -> dict[str, Any]:
    """The plugin's stdout as JSON ({} when empty or not JSON)."""
    try:
        data = json.loads(out) if out.strip() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def is_spec_error(out: bytes) -> bool:
    data = answer(out)
    return isinstance(data.get("code"), int) and isinstance(data.get("msg"), str) and "cniVersion" in data


# -- the config every crash case uses: every kind of step is in it ----------------------------

def full_conf(node: Node, index: int, devinfo: Path) -> dict[str, Any]:
    ipam = {"type": "host-local", "dataDir": str(node.ipam_dir),
            "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd77::/64"}]],
            "routes": [{"dst": "10.60.0.0/16"}]}
    return node.conf(index, vlan=21, vlanQoS=2, mac="02:00:00:00:77:01", spoofchk="off", trust="on",
                     max_tx_rate=100, link_state="enable", mtu=1400, ipam=ipam,
                     runtimeConfig={"CNIDeviceInfoFile": str(devinfo)})


def recorded_points(node: Node, pod: str, conf: dict[str, Any], container: str = "probe") -> dict[str, list[str]]:
    """The fault points ADD and DEL reach with `conf`, in order, as `label@n` (an in-process run)."""
    seen: dict[str, list[str]] = {"ADD": [], "DEL": []}
    phase = ["ADD"]

    def record(label: str, occurrence: int) -> None:
        seen[phase[0]].append(f"{label}@{occurrence}")

    ctx = dataclasses.replace(node.ctx, fault_hook=record)
    stdin = json.dumps(conf).encode()
    out, code = run_cni(node.env("ADD", pod, container=container), stdin, ctx)
    if code != 0:
        raise RuntimeError(f"probe ADD failed: {out!r}")
    phase[0] = "DEL"
    out, code = run_cni(node.env("DEL", pod, container=container), stdin, ctx)
    if code != 0:
        raise RuntimeError(f"probe DEL failed: {out!r}")
    return seen


# -- the agent as a process -------------------------------------------------------------------

class AgentProcess:
    """The launcher script as a child process (own session, so a SIGKILL takes it all)."""

    def __init__(self, node: Node, socket_path: Path, *, kill_after: str = "", extra: list[str] | None = None):
        self.node, self.socket_path = node, socket_path
        argv = [sys.executable, str(LAUNCHER), "--host-root", str(node.host.root), "--state-dir",
                str(node.state_dir), "--socket", str(socket_path), "--cni-devinfo-dir", node.ctx.devinfo_dir,
                "--cni-log-dir", node.ctx.log_dir, *(extra or [])]
        if kill_after:
            argv += ["--kill-after", kill_after]
        self.log = open(node.tmp / f"agent-{secrets.token_hex(3)}.log", "wb")  # noqa: SIM115 - closed in stop
        repo = str(Path(__file__).resolve().parents[3])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, env=env,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.started_at = float(line.split()[1]) if line.startswith(b"ready ") else 0.0
        if not line.startswith(b"ready "):
            self.stop()
            raise RuntimeError(f"agent did not start: {line!r}; log {self.log.name}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_dead(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def shim_for(node: Node, directory: Path, socket_path: Path, *, fallback: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return install_shim(directory, ShimSettings(
        agent_socket=str(socket_path), fallback_python=sys.executable if fallback else "",
        interpreter=sys.executable, host_root=str(node.host.root), state_dir=str(node.state_dir),
        devinfo_dir=node.ctx.devinfo_dir, log_dir=node.ctx.log_dir))
