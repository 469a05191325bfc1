"""Reliability scenarios shared by `tests/reliability/` (CI sizes) and `bench/reliability_report.py`
(full sizes): each runs on a veth-backed simulated node and returns an `Outcome` — cases tried,
failures (a wrong answer) and leaks (anything not given back: a VF's name, MAC, MTU or PF-side
settings, a state record, journal or temp file, a held lock, an IPAM allocation, a device-info
file). Every function cleans up what it made, also when it fails.
"""

from __future__ import annotations

import ast
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
    found += [f"attachment lock {p.name}" for p in sorted(lock_dir.glob("*.attach"))]
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


def crash_agent_in_del(tmp: Path) -> Outcome:
    """The agent SIGKILLed after each DEL step: the shim answers with an error; the DEL again,
    through the fallback or a restarted agent (alternately), gives everything back."""
    out = Outcome("crash: agent killed mid-DEL, DEL again via fallback / restarted agent")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        devinfo = node.tmp / "devinfo.json"
        conf = full_conf(node, 2, devinfo)
        points = recorded_points(node, make_pod(), conf)["DEL"]
        socket_path = tmp / "agent" / "cni.sock"
        shim = shim_for(node, tmp / "bin", socket_path)
        for n, point in enumerate(points):
            recover = "fallback" if n % 2 == 0 else "restarted agent"
            out.tried += 1
            case = f"agent killed after DEL {point}, DEL again via {recover}"
            pod = make_pod()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   **node.env("ADD", pod, container=f"ad{secrets.token_hex(6)}")}
            with AgentProcess(node, socket_path):
                added, code = execute([str(shim)], env, conf)
            if code != 0:
                out.fail(case, f"ADD answered {added[:200]!r}")
            del_env = {**env, "CNI_COMMAND": "DEL"}
            with AgentProcess(node, socket_path, kill_after=point) as agent:
                stdout, code = execute([str(shim)], del_env, conf)
                if agent.wait_dead() != KILLED:
                    out.fail(case, "the agent was not killed there")
            if code == 0 or "mid-call" not in str(answer(stdout).get("msg")):
                out.fail(case, f"the shim answered {code} {stdout[:200]!r}, not 'agent failed mid-call'")
            if recover == "fallback":
                stdout, code = execute([str(shim)], del_env, conf)
            else:
                with AgentProcess(node, socket_path):
                    stdout, code = execute([str(shim)], del_env, conf)
            if (stdout, code) != (b"", 0):
                out.fail(case, f"DEL again answered {code} {stdout[:300]!r}")
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


# -- 2. races ---------------------------------------------------------------------------------

def taken_error(out: bytes) -> bool:
    """The clear answer for a contended VF: already attached to another pod, or its lock busy."""
    data = answer(out)
    msg = str(data.get("msg", ""))
    return (data.get("code") == 100 and "is already attached" in msg) or (data.get("code") == 11 and "busy" in msg)


def in_pod(pod: str, ifname: str = "net1") -> bool:
    return subprocess.run(["ip", "-n", os.path.basename(pod), "link", "show", ifname], capture_output=True,
                          check=False).returncode == 0


@dataclass
class RaceRig:
    """A node with an agent process and two shims: one served by the agent, one whose agent
    socket does not exist (every call runs standalone, the shim's fallback)."""

    node: Node
    via: dict[str, Path]
    conf_of: Any  # Callable[[int], dict]

    def call(self, path: str, command: str, vf: int, pod: str, container: str) -> tuple[bytes, int]:
        """(stdout, exit status); an empty stdout on failure is replaced by a note with stderr's tail."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.node.env(command, pod, container=container)}
        proc = subprocess.run([str(self.via[path])], input=json.dumps(self.conf_of(vf)).encode(), env=env,
                              capture_output=True, timeout=120, check=False)
        if proc.returncode != 0 and not proc.stdout.strip():
            return f"<nothing on stdout via {path}; stderr: {proc.stderr[-600:]!r}>".encode(), proc.returncode
        return proc.stdout, proc.returncode


@contextlib.contextmanager
def race_rig(tmp: Path, vfs: int) -> Iterator[RaceRig]:
    with sim_node(tmp, num_vfs=vfs) as node:
        socket_path = tmp / "agent" / "cni.sock"
        via = {"agent": shim_for(node, tmp / "bin-agent", socket_path),
               "standalone": shim_for(node, tmp / "bin-alone", tmp / "no-agent" / "cni.sock")}

        def conf_of(vf: int) -> dict[str, Any]:
            return node.conf(vf, vlan=100 + vf, spoofchk="off", mac=f"02:00:00:00:88:{vf:02x}",
                             ipam=node.host_local("10.88.0.0/24"))

        with AgentProcess(node, socket_path):
            yield RaceRig(node, via, conf_of)


def races(tmp: Path, *, workers: int = 32, cycles: int = 100, vfs: int = 8) -> Outcome:
    """`workers` loops of ADD then DEL, `cycles` each, over `vfs` VFs (worker w wants VF w % vfs),
    each call through the agent or standalone at random. A won ADD must put the VF in that pod and
    no other; a lost one must be the clear "taken/busy" error; every DEL must succeed and never
    disturb the winner."""
    import random
    import threading

    out = Outcome(f"races: {workers} ADD/DEL loops x {cycles} over {vfs} VFs, agent+standalone")
    guard = threading.Lock()
    owners: dict[int, str] = {}
    with race_rig(tmp, vfs) as rig, pods() as make_pod:
        before = rig.node.views()
        pod_of = [make_pod() for _ in range(workers)]

        def record(case: str, why: str) -> None:
            with guard:
                out.fail(case, why)

        def loop(w: int) -> None:
            rng = random.Random(w)
            vf, pod = w % vfs, pod_of[w]
            for c in range(cycles):
                container = f"w{w}c{c}x{secrets.token_hex(4)}"
                case = f"worker {w} cycle {c} VF {vf}"
                added, code = rig.call(rng.choice(("agent", "standalone")), "ADD", vf, pod, container)
                with guard:
                    out.tried += 1
                if code == 0:
                    _holder_checks(vf, pod, container, case, owners, guard, record)
                elif not taken_error(added):
                    record(case, f"ADD answered {code} {added[:200]!r}")
                deleted = rig.call(rng.choice(("agent", "standalone")), "DEL", vf, pod, container)
                if deleted != (b"", 0):
                    record(case, f"DEL answered {deleted[1]} {deleted[0][:200]!r}")

        threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for pod in pod_of:
            make_pod.remove(pod)
        out.leaks += leak_report(rig.node, before)
    return out


def _holder_checks(vf: int, pod: str, container: str, case: str, owners: dict[int, str], guard: Any,
                   record: Any) -> None:
    """The winner: nobody else holds the VF, and its interface is in the pod (until just before DEL)."""
    with guard:
        holder = owners.get(vf)
        owners[vf] = container
    if holder is not None:
        record(case, f"VF {vf} given to {container} while {holder} held it")
    if not in_pod(pod):
        record(case, "ADD succeeded but net1 is not in the pod")
    with guard:
        owners.pop(vf, None)  # before its DEL: once DEL starts the VF may go to the next pod


def same_vf_at_once(tmp: Path, rounds: int) -> Outcome:
    """Two ADDs for one VF started together (one through the agent, one standalone): exactly one
    wins, the other gets the clear error; both DELs succeed."""
    import threading

    out = Outcome("races: two ADDs for one VF at once")
    with race_rig(tmp, 2) as rig, pods() as make_pod:
        before = rig.node.views()
        for n in range(rounds):
            out.tried += 1
            case = f"round {n}"
            contenders = [("agent", make_pod(), f"r{n}a"), ("standalone", make_pod(), f"r{n}s")]
            answers: dict[str, tuple[bytes, int]] = {}
            start = threading.Barrier(2)

            def add(path: str, pod: str, container: str, start: threading.Barrier,
                    answers: dict[str, tuple[bytes, int]]) -> None:
                start.wait()
                answers[container] = rig.call(path, "ADD", 0, pod, container)

            threads = [threading.Thread(target=add, args=(*c, start, answers)) for c in contenders]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            won = [c for c in contenders if answers[c[2]][1] == 0]
            lost = [c for c in contenders if answers[c[2]][1] != 0]
            if len(won) != 1 or not all(taken_error(answers[c[2]][0]) for c in lost):
                out.fail(case, f"answers {answers}")
            if won and not in_pod(won[0][1]):
                out.fail(case, "the winner's pod has no net1")
            for path, pod, container in contenders:
                if rig.call(path, "DEL", 0, pod, container) != (b"", 0):
                    out.fail(case, f"DEL of {container} failed")
                make_pod.remove(pod)
        out.leaks += leak_report(rig.node, before)
    return out


def late_del_of_an_old_pod(tmp: Path, rounds: int) -> Outcome:
    """Pod A has the VF and gives it back, pod B gets it with other settings, then A's DEL comes
    again (a runtime retrying, through the agent or standalone, A's namespace alive or deleted, A's
    first ADD whole or killed half-way): B's interface, MAC, VLAN and address stay as they are."""
    out = Outcome("races: late DEL of an old pod")
    with race_rig(tmp, 2) as rig, pods() as make_pod:
        node = rig.node
        before = node.views()
        for n in range(rounds):
            out.tried += 1
            path = ("agent", "standalone")[n % 2]
            case = f"round {n} via {path}"
            old_pod, new_pod = make_pod(), make_pod()
            old, new = f"old{n}", f"new{n}"
            if n % 3 == 2:  # A's ADD was killed after moving the VF; its DEL gave it back
                env = process_env(node, node.env("ADD", old_pod, container=old), **{ENV_KILL_AFTER: "set mac@1"})
                execute(PLUGIN, env, rig.conf_of(0))
            else:
                rig.call(path, "ADD", 0, old_pod, old)
            rig.call(path, "DEL", 0, old_pod, old)
            new_conf = node.conf(0, vlan=300, mac="02:00:00:00:99:99", ipam=node.host_local("10.88.0.0/24"))
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **node.env("ADD", new_pod, container=new)}
            added, code = execute([str(rig.via[path])], env, new_conf)
            if code != 0:
                out.fail(case, f"B's ADD failed: {added[:200]!r}")
                continue
            if n % 2:
                make_pod.remove(old_pod)
            seen = _attachment_view(node, new_pod)
            if rig.call(path, "DEL", 0, old_pod, old) != (b"", 0):
                out.fail(case, "A's late DEL failed")
            if _attachment_view(node, new_pod) != seen:
                out.fail(case, f"A's late DEL changed B's VF: {seen} -> {_attachment_view(node, new_pod)}")
            if execute([str(rig.via[path])], {**env, "CNI_COMMAND": "DEL"}, new_conf) != (b"", 0):
                out.fail(case, "B's DEL failed")
            make_pod.remove(old_pod)
            make_pod.remove(new_pod)
        out.leaks += leak_report(node, before)
    return out


def _attachment_view(node: Node, pod: str) -> tuple[Any, ...]:
    show = subprocess.run(["ip", "-j", "-n", os.path.basename(pod), "addr", "show", "net1"], capture_output=True,
                          text=True, check=False)
    link = json.loads(show.stdout or "[]")
    settings = node.ctx.netlink.vf_settings(node.pf, 0)
    return (bool(link), link[0].get("address") if link else None,
            sorted(a["local"] for a in link[0].get("addr_info", [])) if link else [], settings)


# -- 4. hostile input ---------------------------------------------------------------------------

HOSTILE_NAMES = ["..", ".", "../x", "a/b", "/abs", "a\0b", "x" * 300, "-lead", ".hidden", "a..b", "é", " ", "a b",
                 "net1\n", "$(reboot)", "*"]


def _fuzz_strategies(node: Node, pod: str) -> Any:
    from hypothesis import strategies as st

    tmp = node.tmp
    regular = tmp / "regular-file"
    regular.write_text("")
    fifo = tmp / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    texts = st.text(max_size=24)
    container = st.one_of(st.sampled_from(["c1", "fz.1", "A-b_c", *HOSTILE_NAMES]), texts)
    ifname = st.one_of(st.sampled_from(["net1", "eth0", "x" * 15, "x" * 16, "b-c", *HOSTILE_NAMES]), texts)
    netns = st.sampled_from([pod, pod, str(regular), str(tmp), str(fifo), "/proc/self/ns/mnt", "/proc/self/ns/net",
                             "/nonexistent/ns", "relative/ns", "", f"{pod}/..", "/dev/null"])
    devices = st.one_of(st.sampled_from([node.vf(0), node.vf(1), node.host.pf_address(0), node.vf(0).upper(),
                                         "../" + node.vf(0), node.vf(0) + "/../..", "0000:ff:1f.7", "\0", "x" * 300,
                                         "11:00.1"]), texts)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.sampled_from(["on", "off", "maybe"]), texts)
    ipam = st.one_of(st.none(), st.fixed_dictionaries(
        {"type": st.sampled_from(["host-local", "static", "", "../../bin/sh", "/bin/sh", "no-such"])},
        optional={"ranges": st.just([[{"subnet": "10.89.0.0/24"}]]), "dataDir": st.just(str(node.ipam_dir)),
                  "addresses": st.just([{"address": "10.89.1.5/24"}])}))
    runtime = st.fixed_dictionaries({}, optional={
        "mac": st.one_of(st.sampled_from(["02:00:00:00:12:34", "ff:ff:ff:ff:ff:ff", "zz"]), texts),
        "CNIDeviceInfoFile": st.sampled_from([str(tmp / "devinfo.json"), "relative", str(tmp / "../x/../devinfo"),
                                              str(tmp / "no-dir" / "f")])})
    log_files = st.one_of(st.sampled_from([str(tmp / "cni.log"), str(fifo), str(tmp), "relative.log", "a\0b",
                                           "/dev/null",
                                           str(regular) + "/x"]), scalars)
    conf = st.fixed_dictionaries(
        {"cniVersion": st.sampled_from(["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.2.0", "9.9.9", ""]),
         "name": st.sampled_from(["fuzz", ""]), "type": st.just("sriov")},
        optional={"deviceID": devices, "vlan": scalars, "vlanQoS": scalars, "vlanProto": scalars, "mac": scalars,
                  "spoofchk": scalars, "trust": scalars, "link_state": scalars, "min_tx_rate": scalars,
                  "max_tx_rate": scalars, "mtu": scalars, "ipam": ipam, "runtimeConfig": runtime,
                  "logLevel": scalars, "logFile": log_files,
                  "prevResult": st.one_of(st.none(), st.just({"cniVersion": "1.0.0"}))})
    plausible = _plausible_conf(node, scalars, ipam, runtime, log_files)
    stdin = st.one_of(plausible, plausible, plausible, conf.map(lambda c: json.dumps(c).encode()),
                      st.binary(max_size=64),
                      st.sampled_from([b"", b"null", b"[]", b'"x"', b"{", b"\xff\xfe{}", b'{"cniVersion": 1}']))
    optional_env = {"CNI_PATH": st.sampled_from(["/usr/lib/cni", "", "/nonexistent", "relative"]),
                    "CNI_ARGS": st.one_of(texts, st.sampled_from(["IgnoreUnknown=1;MAC=02:00:00:00:00:09", "MAC=zz",
                                                                  "K8S_POD_NAME=p;;;=", "IgnoreUnknown"]))}
    hostile_env = st.fixed_dictionaries(
        {"CNI_COMMAND": st.sampled_from(["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "add", "", "BOGUS"]),
         "CNI_CONTAINERID": container, "CNI_IFNAME": ifname, "CNI_NETNS": netns}, optional=optional_env)
    sane_env = st.fixed_dictionaries(
        {"CNI_COMMAND": st.sampled_from(["ADD", "ADD", "ADD", "DEL", "CHECK"]),
         "CNI_CONTAINERID": st.sampled_from(["c1", "fz.1"]), "CNI_IFNAME": st.sampled_from(["net1", "eth0"]),
         "CNI_NETNS": st.just(pod)}, optional=optional_env)
    return st.one_of(sane_env, sane_env, hostile_env), stdin


def _plausible_conf(node: Node, scalars: Any, ipam: Any, runtime: Any, log_files: Any) -> Any:
    """Configs that are mostly right: the fuzzing reaches the device, switch and IPAM steps."""
    from hypothesis import strategies as st

    def mostly(valid: Any) -> Any:
        return st.one_of(valid, valid, valid, scalars)

    conf = st.fixed_dictionaries(
        {"cniVersion": st.sampled_from(["1.1.0", "1.0.0", "0.4.0", "0.3.1"]), "name": st.just("fuzz"),
         "type": st.just("sriov"), "deviceID": mostly(st.sampled_from([node.vf(0), node.vf(1), node.vf(2)]))},
        optional={"vlan": mostly(st.integers(0, 4095)), "vlanQoS": mostly(st.integers(0, 7)),
                  "vlanProto": mostly(st.sampled_from(["802.1q", "802.1Q", "802.1ad"])),
                  "mac": mostly(st.sampled_from(["02:00:00:00:12:34", "02:AA:bb:00:00:01"])),
                  "spoofchk": mostly(st.sampled_from(["on", "off"])), "trust": mostly(st.sampled_from(["on", "off"])),
                  "link_state": mostly(st.sampled_from(["auto", "enable", "disable"])),
                  "min_tx_rate": mostly(st.integers(0, 100)), "max_tx_rate": mostly(st.integers(0, 1000)),
                  "mtu": mostly(st.integers(68, 9000)), "ipam": ipam, "runtimeConfig": runtime,
                  "logFile": log_files, "logLevel": st.sampled_from(["debug", "info", "error", "panic"])})
    return conf.map(lambda c: json.dumps(c).encode())


def fuzz_cni(tmp: Path, examples: int) -> Outcome:
    """Hypothesis-generated env and stdin through `run_cni`: the answer is always the spec's
    (error JSON with a code and message, never the internal-error code), and nothing on the
    host changes unless the call succeeded (a successful ADD is DELeted and must restore all)."""
    from hypothesis import HealthCheck, given, settings

    out = Outcome("hostile input: fuzzed CNI env + stdin through run_cni")
    with sim_node(tmp) as node, pods() as make_pod:
        pod = make_pod()
        before = node.views()
        env_st, stdin_st = _fuzz_strategies(node, pod)
        extra = (node.tmp / "devinfo.json",)

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(env_st, stdin_st)
        def one(env: dict[str, str], stdin: bytes) -> None:
            out.tried += 1
            problem = _fuzz_case(node, env, stdin)
            if problem is None:
                problem = "; ".join(leak_report(node, before, extra_files=extra)) or None
                if problem:
                    _reset(node)
            assert problem is None, problem

        try:
            one()
        except AssertionError as exc:
            out.fail("falsifying example", str(exc).splitlines()[0][:400])
        except Exception as exc:
            out.fail("falsifying example", repr(exc)[:400])
        out.leaks += leak_report(node, before, extra_files=extra)
    return out


def _fuzz_case(node: Node, env: dict[str, str], stdin: bytes) -> str | None:
    full = {**env, "CNI_PATH": env.get("CNI_PATH", "/usr/lib/cni")}
    stdout, code = run_cni(full, stdin, node.ctx)
    if code != 0:
        data = answer(stdout)
        if not is_spec_error(stdout) or not stdout.endswith(b"\n") or stdout.count(b"\n") != 1:
            return f"not the spec's error JSON: {stdout[:200]!r} for {env!r} {stdin[:200]!r}"
        if data["code"] == 199:
            return f"internal error (a bug): {data} for {env!r} {stdin[:300]!r}"
        return None
    if env["CNI_COMMAND"] == "ADD":
        undo = run_cni({**full, "CNI_COMMAND": "DEL"}, stdin, node.ctx)
        if undo != (b"", 0):
            return f"DEL after a successful ADD answered {undo!r} for {env!r} {stdin[:300]!r}"
    return None


def _reset(node: Node) -> None:
    """After a case that left something behind: DEL every record, so the next case starts clean."""
    for record in node.ctx.store.records(pending=True):
        run_cni(node.env("DEL", record.netns, container=record.container_id, ifname=record.ifname),
                record.config.encode() or b"{}", node.ctx)


# -- 3. restarts ----------------------------------------------------------------------------------

RESOURCE_NAME = "sriov_rel"
RESOURCE = f"intel.com/{RESOURCE_NAME}"


@dataclass
class RestartRig:
    node: Node
    kubelet: Any
    tmp: Path
    shim: Path
    socket_path: Path
    agent_args: list[str]
    registration_latencies: list[float] = field(default_factory=list)

    def agent(self) -> AgentProcess:
        return AgentProcess(self.node, self.socket_path, extra=self.agent_args)

    def pool(self, count: int, timeout: float = 15) -> dict[str, bool]:
        """The kubelet's view of the pool once it has `count` devices: id -> healthy."""
        try:
            devices = self.kubelet.wait_for_devices(RESOURCE, count, timeout=timeout)
        except TimeoutError:
            devices = self.kubelet.resources().get(RESOURCE, {})
        return {i: s.healthy for i, s in devices.items()}

    def cni(self, command: str, pod: str, container: str, device: str) -> tuple[bytes, int]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.node.env(command, pod, container=container)}
        conf = self.node.conf(0, deviceID=device, vlan=55, ipam=self.node.host_local("10.66.0.0/24"))
        return execute([str(self.shim)], env, conf)


@contextlib.contextmanager
def restart_rig(tmp: Path, vfs: int = 4) -> Iterator[RestartRig]:
    from sriovkit.kubesim import Kubelet

    with sim_node(tmp, num_vfs=vfs, vendor="8086", device="1592", vfDevice="1889", driver="ice",
                  vfDriver="iavf") as node:
        config = tmp / "config.json"
        config.write_text(json.dumps({"resourceList": [
            {"resourceName": RESOURCE_NAME, "selectors": {"drivers": ["iavf"], "pfNames": [node.pf]}}]}))
        kubelet = Kubelet(tmp / "device-plugins", pod_resources_socket=tmp / "pod-resources.sock")
        kubelet.start()
        socket_path = tmp / "agent" / "cni.sock"
        args = ["--config-file", str(config), "--device-plugin-dir", str(tmp / "device-plugins"),
                "--work-dir", str(tmp)]
        try:
            yield RestartRig(node, kubelet, tmp, shim_for(node, tmp / "bin", socket_path), socket_path, args)
        finally:
            kubelet.stop()


def _registrations_after(kubelet: Any, count: int, timeout: float = 15) -> list[Any]:
    kubelet.wait_for(lambda k: len(k.registrations) > count, timeout)
    return list(kubelet.registrations[count:])


def agent_restart_with_pods(tmp: Path, rounds: int, *, registration_budget_s: float | None = None) -> Outcome:
    """Pods hold VFs (allocated by the kubelet, attached by CNI through the agent); the agent is
    SIGKILLed or stopped, then started again: it re-registers, its pool keeps every VF (those
    inside pods too) with the same health, the kubelet's assignments stay, and DEL through the
    new agent gives every VF back. With `registration_budget_s`, a slower re-registration (from
    the new agent starting its components) counts as a failure."""
    out = Outcome("restarts: agent restarted while pods hold VFs")
    with restart_rig(tmp) as rig, pods() as make_pod:
        before = rig.node.views()
        agent = rig.agent()
        try:
            pool = rig.pool(4)
            if len(pool) != 4 or not all(pool.values()):
                out.fail("start", f"pool before any restart: {pool}")
            held = _attach_pods(rig, make_pod, 2, out)
            assignments = dict(rig.kubelet.assignments)
            for n in range(rounds):
                out.tried += 1
                how = "SIGKILL" if n % 2 == 0 else "SIGTERM"
                case = f"round {n} ({how})"
                seen = len(rig.kubelet.registrations)
                if how == "SIGKILL":
                    os.killpg(agent.proc.pid, 9)
                agent.stop()
                agent = rig.agent()
                regs = _registrations_after(rig.kubelet, seen)
                if not regs:
                    out.fail(case, "the agent did not register again")
                    continue
                latency = regs[0].at - agent.started_at
                rig.registration_latencies.append(latency)
                if registration_budget_s is not None and latency > registration_budget_s:
                    out.fail(case, f"re-registered {latency:.2f}s after starting")
                after = rig.pool(4)
                if after != pool:
                    out.fail(case, f"pool changed: {pool} -> {after}")
                if dict(rig.kubelet.assignments) != assignments:
                    out.fail(case, "the kubelet's assignments changed")
            for pod, container, device in held:
                if rig.cni("DEL", pod, container, device) != (b"", 0):
                    out.fail("DEL after the restarts", f"{container} on {device}")
        finally:
            agent.stop()
        out.leaks += leak_report(rig.node, before)
    out.scenario += f" (re-registration max {max(rig.registration_latencies, default=0):.2f}s)"
    return out


def _attach_pods(rig: RestartRig, make_pod: PodFactory, count: int, out: Outcome) -> list[tuple[str, str, str]]:
    held = []
    for n in range(count):
        name = f"pod{n}"
        rig.kubelet.allocate(name, "app", {RESOURCE: 1})
        device = rig.kubelet.assignments[("default", name, "app")].devices[RESOURCE][0]
        pod, container = make_pod(), f"rs{n}{secrets.token_hex(4)}"
        added, code = rig.cni("ADD", pod, container, device)
        if code != 0:
            out.fail(f"ADD for {name}", added[:200].decode(errors="replace"))
            continue
        held.append((pod, container, device))
    return held


def kubelet_restart(tmp: Path, rounds: int, *, registration_budget_s: float | None = None) -> Outcome:
    """The kubelet (simulator) restarts, wiping the device-plugin sockets: the agent registers again
    (within `registration_budget_s` when given), and the pool it reports is the one before."""
    out = Outcome("restarts: kubelet restarted")
    with restart_rig(tmp) as rig, pods() as make_pod:
        before = rig.node.views()
        with rig.agent():
            pool = rig.pool(4)
            held = _attach_pods(rig, make_pod, 1, out)
            for n in range(rounds):
                out.tried += 1
                case = f"round {n}"
                seen = len(rig.kubelet.registrations)
                rig.kubelet.restart(wipe_sockets=True)
                restarted = time.monotonic()
                regs = _registrations_after(rig.kubelet, seen)
                if not regs:
                    out.fail(case, "the agent did not register again")
                    continue
                latency = regs[0].at - restarted
                rig.registration_latencies.append(latency)
                if registration_budget_s is not None and latency > registration_budget_s:
                    out.fail(case, f"re-registered {latency:.2f}s after the kubelet restarted")
                after = rig.pool(4)
                if after != pool:
                    out.fail(case, f"pool changed: {pool} -> {after}")
            for pod, container, device in held:
                if rig.cni("DEL", pod, container, device) != (b"", 0):
                    out.fail("DEL after the restarts", f"{container} on {device}")
        out.leaks += leak_report(rig.node, before)
    out.scenario += f" (re-registration max {max(rig.registration_latencies, default=0):.2f}s)"
    return out


# -- 5. exposure ----------------------------------------------------------------------------------

SRC = Path(__file__).resolve().parents[2] / "src" / "sriovkit"
SHELLS_AND_TOOLS = {"sh", "bash", "dash", "zsh", "ip", "tc", "ethtool", "devlink", "iptables", "nft", "modprobe",
                    "echo", "cat", "env", "sudo"}


def shell_uses(source: str, filename: str) -> list[str]:
    """Calls that run a shell or a networking tool: shell=True, os.system/popen/spawn*/exec*p,
    and subprocess/os.exec* with a literal argv naming a shell or a tool (`ip`, `tc`, ...)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        where = f"{filename}:{node.lineno}"
        name = ast.unparse(node.func)
        if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
               for k in node.keywords):
            found.append(f"{where}: shell= in {name}")
        if name in ("os.system", "os.popen") or name.startswith(("os.spawn", "pty.")) or name.endswith("execlp"):
            found.append(f"{where}: {name}")
        if (name.startswith("subprocess.") or name.startswith("os.exec")) and node.args:
            program = _literal_program(node.args[-1] if name.startswith("os.exec") else node.args[0])
            if program is not None and os.path.basename(program) in SHELLS_AND_TOOLS:
                found.append(f"{where}: {name} runs {program}")
    return found


def _literal_program(arg: ast.expr) -> str | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value.split()[0] if arg.value.split() else arg.value
    if isinstance(arg, (ast.List, ast.Tuple)) and arg.elts:
        first = arg.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def no_shell_in_product() -> Outcome:
    out = Outcome("exposure: no shell or ip tool in src/sriovkit")
    for path in sorted(SRC.rglob("*.py")):
        out.tried += 1
        for hit in shell_uses(path.read_text(), str(path.relative_to(SRC))):
            out.fail(hit, "runs a shell or tool")
    return out


def modes(tmp: Path) -> Outcome:
    """Agent socket 0600 in a 0700 dir, state files 0600 and dirs 0700 (umask 0), metrics on loopback."""
    from sriovkit.agent.metrics import DEFAULT_METRICS_ADDRESS, AgentMetrics, MetricsServer
    from sriovkit.cni.state import AttachmentRecord, StateStore
    from sriovkit.shim.server import CniSocketServer

    out = Outcome("exposure: socket, state and metrics")
    old = os.umask(0)
    try:
        sock = tmp / "run" / "sriovkit" / "cni.sock"
        server = CniSocketServer(sock, lambda env, stdin: (b"", 0))
        server.start()
        checks = {"socket 0600": _mode(sock) == 0o600, "socket dir 0700": _mode(sock.parent) == 0o700}
        server.stop()
        store = StateStore(str(tmp / "state"))
        store.save(AttachmentRecord("c", "n", "/x", "net", "0000:00:01.0", "netdev", complete=False))
        with store.lock("0000:00:01.0", 1):
            checks["lock 0600"] = _mode(tmp / "state" / "locks" / "0000:00:01.0.lock") == 0o600
        checks["journal 0600"] = _mode(tmp / "state" / "c-n.pending") == 0o600
        checks["state dirs 0700"] = _mode(tmp / "state") == _mode(tmp / "state" / "locks") == 0o700
    finally:
        os.umask(old)
    metrics = MetricsServer(":0", AgentMetrics(), lambda: True)
    metrics.start()
    bound = metrics._httpd.server_address[0] if metrics._httpd is not None else ""
    metrics.stop()
    checks["metrics default loopback"] = DEFAULT_METRICS_ADDRESS.startswith("127.0.0.1:") and bound == "127.0.0.1"
    for what, ok in checks.items():
        out.tried += 1
        if not ok:
            out.fail(what, "wrong")
    return out


def _mode(path: Path) -> int:
    import stat

    return stat.S_IMODE(os.lstat(path).st_mode)
