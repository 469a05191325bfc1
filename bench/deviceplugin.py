"""The device plugin under the kubelet stand-in, beside upstream's, on simulated hosts of 1024 and 4096 VFs.

For each size, `sriovctl agent` and upstream's sriovdp (bench/peers: built from the Go module
proxy at a pinned version when the proxy serves it, run on the same simulated host in a private
mount and network namespace) each run as their own process against `sriovkit.kubesim` (in this
process) over real unix sockets, in interleaved rounds (the machine is shared and noisy: medians
over rounds). Per plugin and size:

- first registration: from spawning the process (interpreter start and imports included) to
  the kubelet's first Register; all pools: until every pool's first ListAndWatch list arrived;
- Allocate mean / p50 / p99 over N calls from the same Python gRPC client (1 device each);
- resident memory when the kubelet saw the first registration, and settled (after the calls);
- sriovkit only: health change, a PF's operstate written "down"/"up" to the kubelet seeing
  the VFs' new health in ListAndWatch (median and max over M flips).

    .venv/bin/python bench/deviceplugin.py [--sizes 1024 4096] [--rounds 3] [--calls 1000] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from sriovkit.deviceplugin.api import deviceplugin_pb2 as pb
from sriovkit.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from sriovkit.output import format_table
from sriovkit.sim import host as sim
from sriovkit.sim.host import set_operstate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import upstream
from procs import stop

VFS_PER_PF = 128
RESOURCES = [
    {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}},
    {"resourceName": "net", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]}},
]


def build_host(root: Path, num_vfs: int) -> None:
    pfs = [{"name": f"ens{i}f0", "numVfs": VFS_PER_PF, "totalVfs": VFS_PER_PF, "numaNode": i % 2,
            "vfDrivers": {"0-7": "vfio-pci"}} for i in range(num_vfs // VFS_PER_PF)]
    sim.create(root, {"pfs": pfs})


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def allocate_latencies(socket: Path, ids: list[str], calls: int) -> list[float]:
    return interleaved_latencies({"one": socket}, ids, calls)["one"]


def interleaved_latencies(sockets: dict[str, Path], ids: list[str], calls: int,
                          block: int = 50) -> dict[str, list[float]]:
    """`calls` Allocate calls (1 device each) to each server in `sockets`, from one client, in
    alternating blocks of `block`: the machine is shared, so servers compared side by side must
    see the same moments of it."""
    channels = {name: grpc.insecure_channel(f"unix:{path}") for name, path in sockets.items()}
    try:
        stubs = {name: pb_grpc.DevicePluginStub(ch) for name, ch in channels.items()}
        for stub in stubs.values():
            stub.GetDevicePluginOptions(pb.Empty(), timeout=5)
        requests = [pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[i])])
                    for i in ids]
        samples: dict[str, list[float]] = {name: [] for name in sockets}
        done = 0
        while done < calls:
            n = min(block, calls - done)
            for name, stub in stubs.items():
                out = samples[name]
                for i in range(done, done + n):
                    request = requests[i % len(requests)]
                    t0 = time.perf_counter()
                    stub.Allocate(request, timeout=5)
                    out.append(time.perf_counter() - t0)
            done += n
        return samples
    finally:
        for ch in channels.values():
            ch.close()


def health_latencies(kubelet: Kubelet, sysfs: Sysfs, flips: int) -> list[float]:
    samples = []
    rng = random.Random(1)
    for i in range(flips):
        up = i % 2 == 1
        time.sleep(rng.uniform(0, 0.3))  # do not lock the flips to the agent's poll phase
        t0 = time.perf_counter()
        set_operstate(sysfs, "ens0f0", "up" if up else "down")
        ok = kubelet.wait_for(lambda k, up=up: _pf0_health(k) == up, timeout=10)
        if not ok:
            raise RuntimeError("health change never reached ListAndWatch")
        samples.append(time.perf_counter() - t0)
    return samples


def _pf0_health(kubelet: Kubelet) -> bool | None:
    devices = kubelet.resources().get("intel.com/dpdk", {})
    first = devices.get("0000:11:00.0")
    return None if first is None else first.healthy


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Run:
    """One plugin process's figures on one host."""

    first_s: float
    all_pools_s: float
    alloc: list[float]
    rss_registered: float
    rss_settled: float
    health: list[float] = field(default_factory=list)


class Floor:
    """A server with a fixed Allocate answer (bench/peers), up for one host size: what a plugin in
    its language cannot go below with this client on this machine now, and its memory."""

    def __init__(self, cmd: list[str], socket: Path) -> None:
        self.socket = socket
        self.proc = subprocess.Popen([*cmd, str(socket)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} never served {socket} (exit {self.proc.poll()})")
            time.sleep(0.02)
        time.sleep(0.2)  # listening: its start-up allocations are done
        self.rss_started = rss_mib(self.proc.pid)

    def run(self, alloc: list[float]) -> Run:
        return Run(0.0, 0.0, alloc, self.rss_started, rss_mib(self.proc.pid))

    def stop(self) -> None:
        stop(self.proc, 20)


def run_plugin(cmd: list[str], kubelet: Kubelet, num_vfs: int, calls: int, floors: dict[str, Floor],
               health: Callable[[], list[float]] | None = None) -> tuple[Run, dict[str, Run]]:
    """Start `cmd` (a device plugin for RESOURCES), measure it (its Allocate interleaved with the
    floors'), stop it."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not kubelet.wait_for(lambda k: bool(k.registrations), timeout=120):
            raise RuntimeError(f"no registration from {cmd[0]} (exit {proc.poll()})")
        rss_registered = rss_mib(proc.pid)
        first = kubelet.registrations[0].at - t0
        kubelet.wait_for_devices("intel.com/net", num_vfs * 120 // 128, timeout=120)
        kubelet.wait_for_devices("intel.com/dpdk", num_vfs // 16, timeout=120)
        all_pools = time.monotonic() - t0
        socket = next(r.endpoint for r in kubelet.registrations if r.resource == "intel.com/net")
        net_ids = sorted(kubelet.resources()["intel.com/net"])
        time.sleep(1.0)  # past start-up (upstream's too): Allocate as a pod start meets it on a running node
        samples = interleaved_latencies({"plugin": Path(socket), **{n: f.socket for n, f in floors.items()}},
                                        net_ids, calls)
        flips = health() if health is not None else []
        time.sleep(0.5)
        run = Run(first, all_pools, samples["plugin"], rss_registered, rss_mib(proc.pid), flips)
        return run, {n: f.run(samples[n]) for n, f in floors.items()}
    finally:
        stop(proc, 20)


PY_FLOOR = "bare Python grpc"
PY_METRICS_FLOOR = "bare Python grpc + metrics"
GO_FLOOR = "bare Go grpc"


def floor_commands(go_floor: Path | None) -> dict[str, list[str]]:
    bare = [sys.executable, str(Path(__file__).resolve().parent / "peers" / "bare_grpc.py")]
    cmds = {PY_FLOOR: bare, PY_METRICS_FLOOR: [*bare, "--metrics"]}
    if go_floor is not None:
        cmds[GO_FLOOR] = [str(go_floor)]
    return cmds


def measure(num_vfs: int, args: argparse.Namespace, upstream_bin: Path | None,
            go_floor: Path | None) -> dict[str, list[Run]]:
    root = Path(tempfile.mkdtemp(prefix="dpb", dir="/tmp"))
    floor_cmds = floor_commands(go_floor)
    runs: dict[str, list[Run]] = {"sriovkit": [], "upstream": [], **{n: [] for n in floor_cmds}}
    try:
        build_host(root / "host", num_vfs)
        config = root / "config.json"
        config.write_text(json.dumps({"resourceList": RESOURCES}))
        ours = [sys.executable, "-m", "sriovkit", "agent", "--config-file", str(config),
                "--host-root", str(root / "host"), "--device-plugin-dir", str(root / "dp"),
                "--devinfo-dir", str(root / "devinfo"), "--cni-socket", str(root / "cni" / "cni.sock"),
                "--cni-state-dir", str(root / "cni-state"), "--metrics-address", "127.0.0.1:0",
                "--log-level", "warning"]
        with contextlib.ExitStack() as stack:
            floors: dict[str, Floor] = {}
            for n, (name, cmd) in enumerate(floor_cmds.items()):
                floors[name] = Floor(cmd, root / f"floor-{n}.sock")
                stack.callback(floors[name].stop)
            theirs = None
            if upstream_bin is not None:
                netns_path = stack.enter_context(upstream.veth_namespace(root / "host"))
                theirs = upstream.device_plugin_command(upstream_bin, netns_path=netns_path,
                                                        host_root=root / "host", device_plugin_dir=root / "dp",
                                                        config_file=config)
            for r in range(args.rounds):
                order = [("sriovkit", ours), ("upstream", theirs)]
                for name, cmd in order if r % 2 == 0 else order[::-1]:
                    if cmd is None:
                        continue
                    kubelet = Kubelet(root / "dp")
                    kubelet.start()
                    try:
                        health = None
                        if name == "sriovkit" and r == 0 and args.flips:
                            health = lambda k=kubelet: health_latencies(k, Sysfs(root / "host"), args.flips)  # noqa: E731
                        run, floor_runs = run_plugin(cmd, kubelet, num_vfs, args.calls, floors, health)
                        runs[name].append(run)
                        if name == "sriovkit":  # the floors' figures from the same moments as ours
                            for floor_name, floor_run in floor_runs.items():
                                runs[floor_name].append(floor_run)
                    finally:
                        kubelet.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return runs


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(runs: list[Run]) -> dict[str, float]:
    """Medians over rounds of each figure (Allocate: of each round's mean, p50, p99)."""
    return {
        "first_s": med([r.first_s for r in runs]),
        "all_pools_s": med([r.all_pools_s for r in runs]),
        "alloc_mean_ms": med([statistics.fmean(r.alloc) * 1e3 for r in runs]),
        "alloc_p50_ms": med([percentile(r.alloc, 0.5) * 1e3 for r in runs]),
        "alloc_p99_ms": med([percentile(r.alloc, 0.99) * 1e3 for r in runs]),
        "rss_registered": med([r.rss_registered for r in runs]),
        "rss_settled": med([r.rss_settled for r in runs]),
    }


def figures(results: dict[int, dict[str, list[Run]]], upstream_why: str = "") -> list[dict[str, object]]:
    """The rows of `./dev bench`'s table (bench/table.py's row format): sriovkit's figure; upstream's
    from this run, or when upstream did not run, issue 18's recorded one (`recorded`, with why not
    this run); and the floors measured in this run beside ours (`floors`: what stops a row)."""
    rows: list[dict[str, object]] = []

    def row(figure: str, unit: str, key: str, ours: dict[str, float], theirs: dict[str, float] | None,
            floors: dict[str, dict[str, float]], floor_key: str | None = None) -> None:
        entry: dict[str, object] = {"figure": figure, "unit": unit, "sriovkit": ours[key]}
        if theirs is not None:
            entry["upstream"] = theirs[key]
        elif (recorded := upstream.recorded(figure)) is not None:
            entry["recorded"], entry["recorded_why"] = recorded, upstream_why
        entry["floors"] = [{"name": FLOOR_LABELS[n], "value": f[floor_key or key]} for n, f in floors.items()]
        rows.append(entry)

    for size, runs in results.items():
        ours = summary(runs["sriovkit"])
        theirs = summary(runs["upstream"]) if runs["upstream"] else None
        floors = {n: summary(rs) for n in FLOOR_LABELS if (rs := runs.get(n))}
        row(f"first registration, {size} VFs", "s", "first_s", ours, theirs, {})
        if size == min(results):
            row(f"Allocate mean, same client, {size} VFs", "ms", "alloc_mean_ms", ours, theirs, floors)
            # a floor's memory is the same whenever it is read: it holds no devices
            row(f"RSS at registration, {size} VFs", "MiB", "rss_registered", ours, theirs, floors, "rss_settled")
            row(f"RSS settled, {size} VFs", "MiB", "rss_settled", ours, theirs, floors)
    return rows


FLOOR_LABELS = {PY_FLOOR: "bare Python grpc server, fixed answer (interpreter + grpcio + protobuf)",
                PY_METRICS_FLOOR: "the same serving prometheus_client's metrics (the agent's required dependencies)",
                GO_FLOOR: "bare Go grpc server, fixed answer (grpc-go, kubelet API package)"}


def detail(results: dict[int, dict[str, list[Run]]]) -> str:
    header = ["VFs", "plugin", "rounds", "first reg s", "all pools s", "Alloc mean ms", "Alloc p50 ms",
              "Alloc p99 ms", "RSS reg MiB", "RSS settled MiB", "health p50/max ms"]
    rows = []
    for size, runs in results.items():
        for name, rs in runs.items():
            if not rs:
                continue
            s = summary(rs)
            flips = [h for r in rs for h in r.health]
            health = f"{statistics.median(flips) * 1e3:.0f}/{max(flips) * 1e3:.0f}" if flips else ""
            rows.append([size, name, len(rs), f"{s['first_s']:.2f}", f"{s['all_pools_s']:.2f}",
                         f"{s['alloc_mean_ms']:.3f}", f"{s['alloc_p50_ms']:.3f}", f"{s['alloc_p99_ms']:.3f}",
                         f"{s['rss_registered']:.1f}", f"{s['rss_settled']:.1f}", health])
    return format_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1024, 4096])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each plugin per size")
    parser.add_argument("--calls", type=int, default=1000, help="Allocate calls per run")
    parser.add_argument("--flips", type=int, default=10, help="PF link down/up changes (sriovkit, first round)")
    parser.add_argument("--no-upstream", action="store_true", help="sriovkit only")
    parser.add_argument("--json", help="also write the figures here (for bench/table.py)")
    args = parser.parse_args()
    upstream_bin, why = (None, "--no-upstream") if args.no_upstream else upstream.peer_binary("deviceplugin")
    if upstream_bin is not None:
        why = upstream.ensure_pci_ids()
        upstream_bin = None if why else upstream_bin
    if upstream_bin is None:
        print(f"(upstream device plugin not run: {why})")
    go_floor, go_why = upstream.peer_binary("gofloor")
    if go_floor is None:
        print(f"(bare Go grpc floor not run: {go_why})")
    results = {n: measure(n, args, upstream_bin, go_floor) for n in args.sizes}
    print(detail(results))
    print(f"(machine: {os.cpu_count()} CPUs, shared and noisy; medians over {args.rounds} interleaved rounds; "
          "Allocate of each plugin and the floors in alternating blocks from one client; "
          "upstream: sriov-network-device-plugin built by bench/peers/build.sh)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures(results, why)))


if __name__ == "__main__":
    main()
