"""Reliability scenarios shared by `tests/reliability/` (CI sizes) and `bench/reliability_report.py`
(full sizes): each runs on a veth-backed simulated node and returns an `Outcome` — cases tried,
failures (a wrong answer) and leaks (anything not given back: a VF's name, MAC, MTU or PF-side
settings, a state record, journal or temp file, a held lock, an IPAM allocation, a device-info
file). Every function cleans up what it made, also when it fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import netns as pyroute2_netns

from sriovkit.cni.context import CniContext
from sriovkit.cni.faults import ENV_KILL_AFTER
from sriovkit.cni.plugin import run_cni
from sriovkit.host import sim
from sriovkit.host.simnet import attach_veths
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.select import netlink_for
from sriovkit.shim.install import ShimSettings, install_shim
from tests.integration.cni.conftest import Node, ipam_allocations

NETNS_DIR = "/var/run/netns"
LAUNCHER = Path(__file__).with_name("agent_launcher.py")
PLUGIN = [sys.executable, "-m", "sriovkit.cni.plugin"]
KILLED = -9


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

    def explain(self) -> str:
        return "\n".join([self.line(), *self.failures[:20], *self.leaks[:20]])


# -- the simulated node -----------------------------------------------------------------------

@contextlib.contextmanager
def sim_node(tmp: Path, num_vfs: int = 4, **pf: Any) -> Iterator[Node]:
    """A simulated PF (random name) with veth-backed VFs; torn down on exit."""
    name = f"rl{secrets.token_hex(3)}"
    host = sim.create(tmp / "host", {"pfs": [{"name": name, "numVfs": num_vfs, "totalVfs": max(num_vfs, 8),
                                              **pf}]})
    network = attach_veths(host)
    sysfs = Sysfs(host.root)
    ctx = CniContext(sysfs=sysfs, netlink=netlink_for(sysfs), state_dir=str(tmp / "state"), lock_timeout_s=20)
    node = Node(host, network, ctx, tmp / "node", name)
    node.tmp.mkdir(exist_ok=True)
    try:
        yield node
    finally:
        network.destroy()
        ctx.netlink.close()


@contextlib.contextmanager
def pods() -> Iterator[PodFactory]:
    """Network namespaces standing for pods; every one made is removed on exit."""
    factory = PodFactory()
    try:
        yield factory
    finally:
        for path in factory.made:
            factory.remove(path)


class PodFactory:
    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self) -> str:
        name = f"skrel-{secrets.token_hex(5)}"
        pyroute2_netns.create(name)
        path = f"{NETNS_DIR}/{name}"
        self.made.append(path)
        return path

    @staticmethod
    def remove(path: str) -> None:
        with contextlib.suppress(OSError, FileNotFoundError):
            pyroute2_netns.remove(os.path.basename(path))


def leak_report(node: Node, before: dict[int, tuple[Any, ...]], *, extra_files: tuple[Path, ...] = ()) -> list[str]:
    """What was not given back, one line each (the CNI suite's `assert_no_leaks`, as a list)."""
    state = node.state_dir
    found = [f"state file {p.name}" for pattern in ("*.json", "*.pending", ".tmp-*") for p in state.glob(pattern)]
    lock_dir = state / "locks"
    for lock in sorted(lock_dir.glob("*.lock")) if lock_dir.exists() else []:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found.append(f"lock {lock.name} still held")
        finally:
            os.close(fd)
    found += [f"IPAM allocation {a}" for a in ipam_allocations(node.ipam_dir)]
    found += [f"file {p}" for p in extra_files if p.exists()]
    after = node.views()
    found += [f"VF {i}: {before[i]} became {after.get(i)}" for i in before if after.get(i) != before[i]]
    return found


def process_env(node: Node, env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, "SRIOVKIT_HOST_ROOT": str(node.host.root), "SRIOVKIT_CNI_STATE_DIR": str(node.state_dir),
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


# -- 1. crash at every step -------------------------------------------------------------------

def crash_add_at_every_step(tmp: Path, *, variants: tuple[str, ...] = ("del", "readd", "netns gone")) -> Outcome:
    """The standalone plugin SIGKILLed after each ADD step; then DEL, or ADD again then DEL, or the
    pod's namespace deleted (the runtime tearing the sandbox down) then DEL at once."""
    out = Outcome("crash: plugin killed after each ADD step")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        devinfo = node.tmp / "devinfo.json"
        conf = full_conf(node, 1, devinfo)
        points = recorded_points(node, make_pod(), conf)["ADD"]
        for point in points:
            for variant in variants:
                out.tried += 1
                case = f"kill after {point}, then {variant}"
                pod = make_pod()
                _crash_add_case(node, pod, conf, point, variant, out, case)
                make_pod.remove(pod)
                out.leaks += [f"{case}: {leak}" for leak in leak_report(node, before, extra_files=(devinfo,))]
                if out.leaks:
                    return out  # one leak poisons every later case: stop here with a clear report
    return out


def _crash_add_case(node: Node, pod: str, conf: dict[str, Any], point: str, variant: str, out: Outcome,
                    case: str) -> None:
    container = f"k{secrets.token_hex(6)}"
    env = process_env(node, node.env("ADD", pod, container=container), **{ENV_KILL_AFTER: point})
    stdout, code = execute(PLUGIN, env, conf)
    if code != KILLED:
        out.fail(case, f"the plugin was not killed there (exit {code}: {stdout[:200]!r})")
    if variant == "readd":
        again, code = run_cni(node.env("ADD", pod, container=container), json.dumps(conf).encode(), node.ctx)
        if code != 0 and not is_spec_error(again):
            out.fail(case, f"second ADD answered {again[:200]!r}")
    if variant == "netns gone":
        PodFactory.remove(pod)
    stdout, code = run_cni(node.env("DEL", pod, container=container), json.dumps(conf).encode(), node.ctx)
    if (stdout, code) != (b"", 0):
        out.fail(case, f"DEL answered {code} {stdout[:300]!r}")


def crash_del_at_every_step(tmp: Path) -> Outcome:
    """DEL SIGKILLed after each of its steps, then retried: everything given back."""
    out = Outcome("crash: plugin killed after each DEL step, DEL retried")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        devinfo = node.tmp / "devinfo.json"
        conf = full_conf(node, 2, devinfo)
        points = recorded_points(node, make_pod(), conf)["DEL"]
        for point in points:
            out.tried += 1
            case = f"DEL killed after {point}"
            pod = make_pod()
            container = f"d{secrets.token_hex(6)}"
            stdin = json.dumps(conf).encode()
            added, code = run_cni(node.env("ADD", pod, container=container), stdin, node.ctx)
            if code != 0:
                out.fail(case, f"ADD failed: {added[:200]!r}")
            env = process_env(node, node.env("DEL", pod, container=container), **{ENV_KILL_AFTER: point})
            stdout, code = execute(PLUGIN, env, conf)
            if code != KILLED:
                out.fail(case, f"the plugin was not killed there (exit {code}: {stdout[:200]!r})")
            stdout, code = run_cni(node.env("DEL", pod, container=container), stdin, node.ctx)
            if (stdout, code) != (b"", 0):
                out.fail(case, f"retried DEL answered {code} {stdout[:300]!r}")
            make_pod.remove(pod)
            out.leaks += [f"{case}: {leak}" for leak in leak_report(node, before, extra_files=(devinfo,))]
            if out.leaks:
                return out
    return out


# -- the agent as a process -------------------------------------------------------------------

class AgentProcess:
    """The launcher script as a child process (own session, so a SIGKILL takes it all)."""

    def __init__(self, node: Node, socket_path: Path, *, kill_after: str = "", extra: list[str] | None = None):
        self.node, self.socket_path = node, socket_path
        argv = [sys.executable, str(LAUNCHER), "--host-root", str(node.host.root), "--state-dir",
                str(node.state_dir), "--socket", str(socket_path), *(extra or [])]
        if kill_after:
            argv += ["--kill-after", kill_after]
        self.log = open(node.tmp / f"agent-{secrets.token_hex(3)}.log", "wb")  # noqa: SIM115 - closed in stop
        repo = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, env=env,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
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
        interpreter=sys.executable, host_root=str(node.host.root), state_dir=str(node.state_dir)))


def crash_agent_at_every_step(tmp: Path, *, every: int = 1) -> Outcome:
    """The agent SIGKILLed after each ADD step (every `every`-th point): the shim answers with an
    error and does not repeat the call elsewhere; DEL through the fallback (agent still down) or
    through a restarted agent, alternately, gives everything back."""
    out = Outcome("crash: agent killed mid-ADD, DEL via fallback / restarted agent")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        devinfo = node.tmp / "devinfo.json"
        conf = full_conf(node, 3, devinfo)
        points = recorded_points(node, make_pod(), conf)["ADD"][::every]
        socket_path = tmp / "agent" / "cni.sock"
        shim = shim_for(node, tmp / "bin", socket_path)
        for n, point in enumerate(points):
            recover = "fallback" if n % 2 == 0 else "restarted agent"
            out.tried += 1
            case = f"agent killed after {point}, DEL via {recover}"
            pod = make_pod()
            _crash_agent_case(node, pod, conf, shim, socket_path, point, recover, out, case)
            make_pod.remove(pod)
            out.leaks += [f"{case}: {leak}" for leak in leak_report(node, before, extra_files=(devinfo,))]
            if out.leaks:
                return out
    return out


def _crash_agent_case(node: Node, pod: str, conf: dict[str, Any], shim: Path, socket_path: Path, point: str,
                      recover: str, out: Outcome, case: str) -> None:
    container = f"a{secrets.token_hex(6)}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **node.env("ADD", pod, container=container)}
    with AgentProcess(node, socket_path, kill_after=point) as agent:
        stdout, code = execute([str(shim)], env, conf)
        if agent.wait_dead() != KILLED:
            out.fail(case, "the agent was not killed there")
    data = answer(stdout)
    if code == 0 or data.get("code") != 11 or "mid-call" not in str(data.get("msg")):
        out.fail(case, f"the shim answered {code} {stdout[:200]!r}, not 'agent failed mid-call'")
    del_env = {**env, "CNI_COMMAND": "DEL"}
    if recover == "fallback":
        stdout, code = execute([str(shim)], del_env, conf)
    else:
        with AgentProcess(node, socket_path):
            stdout, code = execute([str(shim)], del_env, conf)
    if (stdout, code) != (b"", 0):
        out.fail(case, f"DEL answered {code} {stdout[:300]!r}")


# -- crash-safe state writes --------------------------------------------------------------------

SAVER = """
import sys
from sriovkit.cni.state import AttachmentRecord, StateStore
store = StateStore(sys.argv[1])
n = 0
while True:
    n += 1
    store.save(AttachmentRecord(container_id="c1", ifname="net1", netns="/x", network="n" * (n % 7 + 1) * 500,
                                pci_address="0000:00:01.0", mode="netdev", config=str(n)))
"""


def kill_while_saving(tmp: Path, rounds: int) -> Outcome:
    """A process saving one record in a loop, SIGKILLed at random moments: the record read back is
    always a whole one, never a torn file; no temp file is left once a DEL-like delete ran."""
    from sriovkit.cni.state import StateStore

    out = Outcome("crash: killed while writing state")
    state = tmp / "save-state"
    store = StateStore(str(state))
    for n in range(rounds):
        out.tried += 1
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(state)])
        time.sleep(0.15 + secrets.randbelow(100) / 1000)
        proc.kill()
        proc.wait()
        try:
            record = store.load("c1", "net1")
        except Exception as exc:  # a torn record is exactly what this looks for
            out.fail(f"round {n}", f"record unreadable after the kill: {exc}")
            continue
        if record is None:
            out.fail(f"round {n}", "no record after the kill")
    store.delete("c1", "net1")
    out.leaks += [f"file {p.name}" for p in state.iterdir() if p.is_file()] if state.exists() else []
    return out
