"""Pod churn (root): 64 pods attach at once through the agent on a 64-VF simulated node, then detach.

Each pod is a network namespace; its ADD (then its DEL) is one exec of the installed shim
(native where built) against the CNI socket of `sriovctl agent`, run in a process of its own as on
a node (`--in-process`: its CNI server in this one, sharing the GIL with the clients' threads),
all pods' calls started together (after one STATUS: `_status_once`). Config: a VLAN, spoofchk off and
host-local IPAM, so every kind of step is in the numbers. For each concurrency limit of the
agent (`--cni-max-concurrent`), `--repeat` bursts through one agent (this machine's runs of one
burst spread by 10-20%), and prints the median burst's total time for all ADDs and all DELs (with
the lowest and highest), p50/p99 per pod over every burst, errors, what was left behind (records,
interfaces not back in the host), and the CPU time the agent process spent (user + system, with
its IPAM plugins'; its kernel work, the moves included, counts as system). Next to it three
kernel floors, measured in the same run by a minimal loop of plain rtnetlink requests: the same
64 moves into the pods' namespaces (and back) done serially, those moves with the rest of the
kernel work an ADD and a DEL do for each pod (the interface up and its address in the pod, so
the move back closes it), and that work again from `--floor-threads` threads at once (whether
the kernel gains anything from being asked at once). The simulated
host's tree is on tmpfs (/dev/shm) where there is one, as a node's sysfs is memory; the CNI
state and IPAM data are on disk, as on a node: a fresh journaled ext4 (`state_filesystem`), or
with `--state-on tmpdir` the temp dir's own.

    .venv/bin/python bench/churn.py [--pods 64] [--limits 4 8 16 32] [--repeat 3] [--floor-threads 8]
                                    [--state-on ext4|tmpdir] [--json FILE] [--profile FILE] [--in-process]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pyroute2 import netns as pyroute2_netns

from sriovkit.agent.cni_service import CniService
from sriovkit.cni.pools import POOLS_FILE
from sriovkit.commands.ports import agent_cni_context
from sriovkit.netlink import rtmsg
from sriovkit.netlink.rawlink import LinkQuery, open_query
from sriovkit.output import format_table
from sriovkit.shim.server import CniSocketServer
from sriovkit.sim import host as sim
from sriovkit.sim.net import attach_veths

sys.path.insert(0, str(Path(__file__).resolve().parent))
import statefs
from agentprofile import ProfiledHandler
from cni_latency import _exec, _install_shim, floor_link, percentile
from procs import MachineCpu, machine_cpu, stop


def pod_env(i: int, netns: str) -> dict[str, str]:
    return {"CNI_CONTAINERID": f"churn{i}", "CNI_NETNS": netns, "CNI_IFNAME": "net1", "CNI_PATH": "/usr/lib/cni"}


def all_at_once(shim: Path, command: str, calls: list[tuple[dict[str, str], bytes]]) -> tuple[float, list[float],
                                                                                            list[str]]:
    """Start every call together; (total s, per-call s, error outputs)."""
    times: list[float] = [0.0] * len(calls)
    errors: list[str] = []
    start = threading.Barrier(len(calls) + 1)

    def one(k: int, env: dict[str, str], stdin: bytes) -> None:
        start.wait()
        t0 = time.perf_counter()
        out, code = _exec([str(shim)], {**env, "CNI_COMMAND": command}, stdin, {})
        times[k] = time.perf_counter() - t0
        if code != 0:
            errors.append(out.decode(errors="replace")[:200])

    threads = [threading.Thread(target=one, args=(k, e, s)) for k, (e, s) in enumerate(calls)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, times, errors


def kernel_floor(vfs: list[str], namespaces: list[str], *, steps: bool = False,
                 threads: int = 1) -> tuple[float, float]:
    """A kernel floor: each VF moved into its pod's namespace (renamed), then all back, by the
    shortest loop: plain rtnetlink requests (each link looked up by name, then one move + rename),
    a socket into each pod's namespace, no library on the way; serially, or with `threads`, that
    many threads sharing the pods, each taking the next (what the kernel makes of the same work
    asked at once). With `steps`, also the rest of the kernel work of the CNI's ADD: in the pod
    the interface up and an address on it (the kernel drops the address with the move back, and
    the interface, up in the pod, is closed on its way, as the CNI's DEL moves it). The VFs start
    down in the host, as every run does (`vfs_down`), so none of them is brought up there again."""
    pods = list(zip(vfs, namespaces, strict=True))
    vfs_down(vfs)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        attach = _each_pod(pods, threads, partial(_pod_in, steps=steps))
        detach = _each_pod(pods, threads, partial(_pod_out, home=home))
    finally:
        os.close(home)
    return attach, detach


def vfs_down(vfs: list[str]) -> None:
    """Every VF down in the host before a run, as the simulator makes them and upstream's DEL leaves
    them: the kernel closes an interface that is up on its way to another namespace, which makes
    its move slower (1.25-1.3 s for 64 here, against 1.03-1.1 s down). Without this, each run found
    the VFs as the one before had left them (the ADD floor's DEL brought them up again)."""
    host = LinkQuery()
    try:
        for vf in vfs:
            host.change(rtmsg.RTM_NEWLINK, rtmsg.link_change(floor_link(host, vf).index, up=False))
    finally:
        host.close()


def _each_pod(pods: list[tuple[str, str]], threads: int, work: Callable[[LinkQuery, int, str, str], None]) -> float:
    """Seconds for `work` on every pod, from `threads` threads (each with its own host socket). A
    thread's failure (a link not there) stops the bench once they all ended, as the serial one does."""
    queue = iter(enumerate(pods))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        host = LinkQuery()
        try:
            while not failures:
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                k, (vf, ns) = item
                work(host, k, vf, ns)
        except BaseException as exc:  # SystemExit included: a thread would drop it silently
            failures.append(exc)
        finally:
            host.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - t0


def _pod_in(host: LinkQuery, k: int, vf: str, ns: str, *, steps: bool) -> None:
    fd = os.open(ns, os.O_RDONLY)
    try:
        _move(host, vf, fd, "net1")
    finally:
        os.close(fd)
    if steps:
        _pod_steps(ns, f"10.125.{k // 250}.{k % 250 + 1}/16")


def _pod_out(host: LinkQuery, k: int, vf: str, ns: str, *, home: int) -> None:
    pod = open_query(ns)
    try:
        _move(pod, "net1", home, vf)
    finally:
        pod.close()


def _pod_steps(netns: str, cidr: str) -> None:
    pod = open_query(netns)
    try:
        index = floor_link(pod, "net1").index
        pod.change(rtmsg.RTM_NEWLINK, rtmsg.link_change(index, up=True))
        pod.change(rtmsg.RTM_NEWADDR, rtmsg.address_change(index, cidr), rtmsg.NLM_F_CREATE | rtmsg.NLM_F_EXCL)
    finally:
        pod.close()


def _move(query: LinkQuery, name: str, netns_fd: int, new_name: str) -> None:
    index = floor_link(query, name).index
    query.change(rtmsg.RTM_NEWLINK, rtmsg.link_change(index, attrs=[rtmsg.net_ns_fd(netns_fd), rtmsg.ifname(new_name)]))


def _status_once(shim: Path, call: tuple[dict[str, str], bytes]) -> None:
    """One STATUS through the agent before the burst, as a CNI 1.1 runtime asks before it adds pods.
    On a node the agent's warm-up builds its (kernel) netlink port at start; a simulated host's port
    is left to the first call, as it imports the simulator (pydantic, yaml: ~0.1 s here), and without
    this every ADD of the first wave would wait for that build."""
    env, stdin = call
    conf = {**json.loads(stdin), "cniVersion": "1.1.0"}
    out, code = _exec([str(shim)], {**env, "CNI_COMMAND": "STATUS"}, json.dumps(conf).encode(), {})
    if code != 0:
        print(f"STATUS before the burst failed ({code}): {out.decode(errors='replace')[:200]}")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process `pid` so far: all its threads, and the children it has
    reaped (its IPAM plugins). NaN without a process of its own to read."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def leftovers(state_dir: Path, vfs: list[str]) -> list[str]:
    # the running agent's pools file is no attachment's
    records = [p for p in state_dir.glob("*.json") if p.name != POOLS_FILE] if state_dir.exists() else []
    left = [f"record {p.name}" for p in records]
    query = LinkQuery()
    try:
        home = {link.get_attr("IFLA_IFNAME") for link in query.dump()}
    finally:
        query.close()
    left += [f"{vf} not back in the host" for vf in vfs if vf not in home]
    return left


@contextlib.contextmanager
def agent_process(limit: int, host: sim.SimulatedHost, root: Path, state_dir: Path) -> Iterator[int | None]:
    """`sriovctl agent` as a node runs it, in a process of its own (its device plugin waits for a
    kubelet that never comes), serving the CNI socket with concurrency `limit`."""
    work = root / f"agent-{limit}"
    work.mkdir()
    config = work / "config.json"
    config.write_text(json.dumps({"resourceList": [{"resourceName": "churn_vf",
                                                    "selectors": {"pfNames": [host.spec.pfs[0].name]}}]}))
    sock = root / "agent" / "cni.sock"
    cmd = [sys.executable, "-m", "sriovkit", "agent", "--config-file", str(config), "--host-root", str(host.root),
           "--device-plugin-dir", str(work / "dp"), "--devinfo-dir", str(work / "devinfo"),
           "--cni-socket", str(sock), "--cni-state-dir", str(state_dir), "--cni-devinfo-dir", str(work / "cni-devinfo"),
           "--cni-log-dir", str(work / "log"), "--cni-max-concurrent", str(limit), "--metrics-address", "",
           "--log-level", "error"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(work / "agent.log").open("wb"))
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the agent never served {sock} (exit {proc.poll()}): see {work / 'agent.log'}")
            time.sleep(0.05)
        time.sleep(1.0)  # its start-up (discovery, the CNI warm-up) done before the burst
        yield proc.pid
    finally:
        stop(proc, 30)


@contextlib.contextmanager
def agent_in_process(limit: int, host: sim.SimulatedHost, root: Path, state_dir: Path,
                     profiler: ProfiledHandler | None) -> Iterator[int | None]:
    """The agent's CNI server in this process (`--in-process`, and `--profile`): its threads share
    the GIL with the clients' exec threads, which a node's runtime does not."""
    service = CniService(agent_cni_context(host.root, state_dir=str(state_dir)))
    handler = service if profiler is None else profiler
    if profiler is not None:
        profiler.handler = service
    server = CniSocketServer(root / "agent" / "cni.sock", handler, max_concurrent=limit)
    server.start()
    try:
        yield None  # no process of its own: its CPU time is not told apart from the clients'
    finally:
        server.stop()


def run_limit(limit: int, shim: Path, host: sim.SimulatedHost, root: Path, calls: list[tuple[dict[str, str], bytes]],
              vfs: list[str], profiler: ProfiledHandler | None = None, *, in_process: bool = False,
              repeat: int = 1) -> dict[str, Any]:
    """`repeat` bursts (all ADDs at once, then all DELs) through one agent with concurrency `limit`:
    each burst's totals and CPU time, every pod's latency, and what any burst got wrong or left."""
    state_dir = root / f"state-{limit}"
    agent = agent_in_process(limit, host, root, state_dir, profiler) if in_process or profiler is not None \
        else agent_process(limit, host, root, state_dir)
    runs: dict[str, Any] = {"limit": limit, "add_totals": [], "add": [], "del_totals": [], "del": [],
                            "add_cpu": [], "del_cpu": [], "add_machine": [], "errors": [], "left": []}
    with agent as pid:
        _status_once(shim, calls[0])
        for _ in range(repeat):
            _burst(shim, calls, vfs, pid, runs)
            left = leftovers(state_dir, vfs)
            runs["left"] += left
            if runs["errors"] or left:
                break  # the next burst would start from what this one got wrong
    return runs


def _burst(shim: Path, calls: list[tuple[dict[str, str], bytes]], vfs: list[str], pid: int | None,
           runs: dict[str, Any]) -> None:
    vfs_down(vfs)
    cpu0, machine0 = cpu_seconds(pid), machine_cpu()
    add_total, add, add_errors = all_at_once(shim, "ADD", calls)
    cpu1, machine1 = cpu_seconds(pid), machine_cpu()
    del_total, dels, del_errors = all_at_once(shim, "DEL", calls)
    cpu2 = cpu_seconds(pid)
    for env, stdin in calls:  # what a refused DEL left, given back as the kubelet's retry would
        _exec([str(shim)], {**env, "CNI_COMMAND": "DEL"}, stdin, {})
    runs["add_totals"].append(add_total)
    runs["del_totals"].append(del_total)
    runs["add"] += add
    runs["del"] += dels
    runs["add_cpu"].append(cpu1 - cpu0)
    runs["del_cpu"].append(cpu2 - cpu1)
    runs["add_machine"].append(machine1 - machine0)
    runs["errors"] += add_errors + del_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=64)
    parser.add_argument("--limits", type=int, nargs="*", default=[4, 8, 16, 32],
                        help="the agent's CNI concurrency limits to try")
    parser.add_argument("--repeat", type=int, default=3,
                        help="bursts per limit, through the same agent: each limit's figures are their median")
    parser.add_argument("--floor-threads", type=int, default=8,
                        help="threads of the third floor: the kernel work asked at once, as the agent's calls do")
    parser.add_argument("--json", help="also write the figures here (for bench/table.py)")
    parser.add_argument("--profile", help="cProfile the agent's calls (every limit) into this file (in process)")
    parser.add_argument("--in-process", action="store_true",
                        help="serve the CNI socket from this process instead of a `sriovctl agent` of its own")
    parser.add_argument("--state-on", choices=statefs.CHOICES, default="ext4", help=statefs.HELP)
    args = parser.parse_args()
    memory = "/dev/shm" if os.path.isdir("/dev/shm") else None  # the simulated sysfs in memory, as a node's is
    with statefs.state_filesystem(args.state_on) as disk, \
            tempfile.TemporaryDirectory(prefix="churn-", dir=disk) as tmp, \
            tempfile.TemporaryDirectory(prefix="churn-host-", dir=memory) as host_tmp:
        root = Path(tmp)
        pf = f"ch{secrets.token_hex(3)}"
        spec = {"pfs": [{"name": pf, "numVfs": args.pods, "totalVfs": max(args.pods, 8)}]}
        host = sim.create(Path(host_tmp) / "host", spec)
        names = [f"churn-{secrets.token_hex(4)}" for _ in range(args.pods)]
        for name in names:
            pyroute2_netns.create(name)
        namespaces = [f"/var/run/netns/{n}" for n in names]
        try:
            with attach_veths(host):
                results, floors, floors_machine = measure(args, host, root, namespaces)
        finally:
            for name in names:
                pyroute2_netns.remove(name)
    report(results, floors, floors_machine, args)


Floors = dict[str, list[tuple[float, float]]]  # each floor's (into, back) seconds, one per limit run


def measure(args: argparse.Namespace, host: sim.SimulatedHost, root: Path,
            namespaces: list[str]) -> tuple[list[dict[str, Any]], Floors, MachineCpu]:
    """Each limit's bursts next to the floors, and what the machine did during the floors."""
    shim = _install_shim(root, host, str(root / "state"))
    vfs = [host.vf_netdev_name(0, i) for i in range(args.pods)]
    calls = []
    for i, ns in enumerate(namespaces):
        conf = {"cniVersion": "1.0.0", "name": "churn", "type": "sriov", "deviceID": host.vf_address(0, i),
                "vlan": 100, "spoofchk": "off",
                "ipam": {"type": "host-local", "subnet": "10.124.0.0/16", "dataDir": str(root / "ipam")}}
        calls.append((pod_env(i, ns), json.dumps(conf).encode()))
    results: list[dict[str, Any]] = []
    floors: Floors = {"moves": [], "steps": [], "threaded": []}
    floors_machine = MachineCpu()
    profiler = ProfiledHandler(lambda env, stdin: (b"", 0)) if args.profile else None
    for limit in args.limits:  # each limit next to a floor run: the machine is noisy
        results.append(run_limit(limit, shim, host, root, calls, vfs, profiler, in_process=args.in_process,
                                  repeat=args.repeat))
        if results[-1]["errors"] or results[-1]["left"]:
            print(f"limit {limit}: errors {results[-1]['errors'][:3]}, left {results[-1]['left'][:3]}")
        before = machine_cpu()
        floors["moves"].append(kernel_floor(vfs, namespaces))
        floors["steps"].append(kernel_floor(vfs, namespaces, steps=True))
        floors["threaded"].append(kernel_floor(vfs, namespaces, steps=True, threads=args.floor_threads))
        floors_machine = floors_machine + (machine_cpu() - before)
    if profiler is not None:
        profiler.dump(args.profile)
    return results, floors, floors_machine


def report(results: list[dict[str, Any]], floors: Floors, floors_machine: MachineCpu,
           args: argparse.Namespace) -> None:
    rows = []
    for r in results:
        rows.append([r["limit"], _spread(r["add_totals"]), f"{statistics.median(r['add']) * 1e3:.0f}",
                     f"{percentile(r['add'], 0.99) * 1e3:.0f}", _spread(r["del_totals"]),
                     f"{statistics.median(r['del']) * 1e3:.0f}", f"{percentile(r['del'], 0.99) * 1e3:.0f}",
                     _seconds(_median(r["add_cpu"])), _seconds(_median(r["del_cpu"])),
                     len(r["errors"]), len(r["left"])])
    print(f"each limit: {args.repeat} bursts through one agent; totals as median (lowest-highest), "
          "per-pod latencies over every burst, CPU time the median burst's")
    print(format_table(["limit", "ADD total s", "ADD p50 ms", "ADD p99 ms", "DEL total s", "DEL p50 ms",
                        "DEL p99 ms", "agent CPU ADD s", "agent CPU DEL s", "errors", "left"], rows))
    (attach_floor, detach_floor), (attach_steps, detach_steps), (attach_threaded, detach_threaded) = (
        (statistics.median(f[0] for f in runs), statistics.median(f[1] for f in runs))
        for runs in (floors["moves"], floors["steps"], floors["threaded"]))
    print(f"kernel floor, {args.pods} moves done serially: into the pods {attach_floor:.2f} s, "
          f"back {detach_floor:.2f} s (median of {len(floors['moves'])}: into "
          f"{', '.join(f'{into:.2f}' for into, _ in floors['moves'])})")
    print(f"kernel floor with the pods' other steps (into: move, up, address; back: move), serially: "
          f"{attach_steps:.2f} s, {detach_steps:.2f} s; from {args.floor_threads} threads at once: "
          f"{attach_threaded:.2f} s, {detach_threaded:.2f} s")
    bursts = sum((m for r in results for m in r["add_machine"]), MachineCpu())
    print(f"the machine during the ADD bursts: {bursts.shares()}; during the floors: {floors_machine.shares()}")
    for r in results:
        for line in (r["errors"] + r["left"])[:3]:
            print(f"  limit {r['limit']}: {line}")
    clean = [r for r in results if not r["errors"] and not r["left"]] or results  # a refused call is no gain
    best = min(clean, key=lambda r: _median(r["add_totals"]) + _median(r["del_totals"]))
    print(f"best limit here: {best['limit']}")
    if args.json:
        bursts = f"median of {len(best['add_totals'])} bursts"
        Path(args.json).write_text(json.dumps([
            {"figure": f"{args.pods} pods attach at once, total (limit {best['limit']}, {bursts}) vs serial moves",
             "unit": "s", "sriovkit": _median(best["add_totals"]), "floor": attach_floor,
             "floors": [{"name": "the same ADDs' kernel work serially (move, up, address)", "value": attach_steps},
                        {"name": f"that work from {args.floor_threads} threads at once", "value": attach_threaded}]},
            {"figure": f"{args.pods} pods detach at once, total (limit {best['limit']}, {bursts}) vs serial moves",
             "unit": "s", "sriovkit": _median(best["del_totals"]), "floor": detach_floor,
             "floors": [{"name": "the same DELs' kernel work serially (move)", "value": detach_steps},
                        {"name": f"that work from {args.floor_threads} threads at once", "value": detach_threaded}]},
        ]))


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _spread(totals: list[float]) -> str:
    """A limit's totals: the median, with the lowest and highest burst when there were several."""
    if len(totals) < 2:
        return _seconds(_median(totals))
    return f"{_median(totals):.2f} ({min(totals):.2f}-{max(totals):.2f})"


def _seconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


if __name__ == "__main__":
    main()
