"""CNI ADD+DEL latency on veth-backed VFs of a simulated host (root).

Paths measured, each N cycles of ADD then DEL with the same config (vlan, spoofchk, mac,
host-local IPAM, so every kind of step is in the numbers):
- shim -> agent: the installed `sriov` shim exec'd per call, served by the agent's CNI socket
  (`CniSocketServer` + `CniService`, as `sriovctl agent` runs them), what a runtime gets;
- in-process: `run_cni` called directly (the agent's work without exec and socket);
- standalone: ``python -m sriovkit.cni.plugin`` exec'd per call (the shim's fallback path);
- shim start-up alone: the shim exec'd against an agent that answers at once, next to a bare
  ``python3 -I -S -c pass``, so the shim's own overhead is the difference.
Prints p50, p99 and max per path and command.

    .venv/bin/python bench/cni_latency.py [--cycles 200] [--standalone 20] [--startup 100]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyroute2 import netns as pyroute2_netns

from sriovkit.agent.cni_service import CniService, agent_cni_context
from sriovkit.cni.context import CniContext
from sriovkit.cni.plugin import run_cni
from sriovkit.host import sim
from sriovkit.host.simnet import attach_veths
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.select import netlink_for
from sriovkit.shim.install import ShimSettings, install_shim
from sriovkit.shim.server import CniSocketServer

Runner = Callable[[dict[str, str], bytes], tuple[bytes, int]]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cycle(run: Runner, env: dict[str, str], conf: bytes, times: dict[str, list[float]]) -> None:
    for command in ("ADD", "DEL"):
        t0 = time.perf_counter()
        out, code = run({**env, "CNI_COMMAND": command}, conf)
        times[command].append(time.perf_counter() - t0)
        if code != 0:
            raise SystemExit(f"{command} failed: {out.decode(errors='replace')}")


def report(label: str, times: dict[str, list[float]]) -> None:
    for command, samples in times.items():
        if samples:
            print(f"{label:<12} {command:<5} n={len(samples):<5} p50={statistics.median(samples) * 1e3:7.2f} ms "
                  f"p99={percentile(samples, 0.99) * 1e3:7.2f} ms max={max(samples) * 1e3:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=200, help="ADD+DEL cycles through the agent and in-process")
    parser.add_argument("--standalone", type=int, default=20, help="cycles through a plugin subprocess")
    parser.add_argument("--startup", type=int, default=100, help="shim start-up samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cni-bench-") as tmp:
        root = Path(tmp)
        pf = f"bn{secrets.token_hex(3)}"
        host = sim.create(root / "host", {"pfs": [{"name": pf, "numVfs": 2, "totalVfs": 8}]})
        ns_name = f"cnibench-{secrets.token_hex(4)}"
        pyroute2_netns.create(ns_name)
        try:
            with attach_veths(host):
                run_bench(args, host, root, f"/var/run/netns/{ns_name}")
        finally:
            pyroute2_netns.remove(ns_name)


def run_bench(args: argparse.Namespace, host: sim.SimulatedHost, root: Path, netns: str) -> None:
    sysfs = Sysfs(host.root)
    state_dir = str(root / "state")
    ctx = CniContext(sysfs=sysfs, netlink=netlink_for(sysfs), state_dir=state_dir)
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0", "name": "bench", "type": "sriov", "deviceID": host.vf_address(0, 0),
        "vlan": 100, "spoofchk": "off", "mac": "02:00:00:00:be:01",
        "ipam": {"type": "host-local", "subnet": "10.123.0.0/24", "dataDir": str(root / "ipam")},
    }
    env = {"CNI_CONTAINERID": "bench", "CNI_NETNS": netns, "CNI_IFNAME": "net1", "CNI_PATH": "/usr/lib/cni"}
    stdin = json.dumps(conf).encode()
    shim = _install_shim(root, host, state_dir)
    socket_path = root / "agent" / "cni.sock"
    agent = CniSocketServer(socket_path, CniService(agent_cni_context(host.root, state_dir=state_dir)))
    agent.start()
    try:
        times: dict[str, list[float]] = {"ADD": [], "DEL": []}
        for _ in range(args.cycles):
            cycle(lambda e, s: _exec([str(shim)], e, s, {}), env, stdin, times)
        report("shim->agent", times)
    finally:
        agent.stop()
    times = {"ADD": [], "DEL": []}
    for _ in range(args.cycles):
        cycle(lambda e, s: run_cni(e, s, ctx), env, stdin, times)
    report("in-process", times)
    if args.standalone:
        proc_env = {"SRIOVKIT_HOST_ROOT": str(host.root), "SRIOVKIT_CNI_STATE_DIR": state_dir}
        times = {"ADD": [], "DEL": []}
        for _ in range(args.standalone):
            cycle(lambda e, s: _exec([sys.executable, "-m", "sriovkit.cni.plugin"], e, s, proc_env), env, stdin,
                  times)
        report("standalone", times)
    ctx.netlink.close()
    if args.startup:
        shim_startup(shim, socket_path, args.startup)


def _install_shim(root: Path, host: sim.SimulatedHost, state_dir: str) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    interpreter = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    return install_shim(bin_dir, ShimSettings(agent_socket=str(root / "agent" / "cni.sock"), interpreter=interpreter,
                                              host_root=str(host.root), state_dir=state_dir))


def _exec(argv: list[str], env: dict[str, str], stdin: bytes, extra: dict[str, str]) -> tuple[bytes, int]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra, **env}
    p = subprocess.run(argv, input=stdin, env=full, capture_output=True, check=False)
    return p.stdout, p.returncode


def shim_startup(shim: Path, socket_path: Path, samples: int) -> None:
    """The shim against an agent that answers at once: what the shim itself costs per call."""
    server = CniSocketServer(socket_path, lambda env, stdin: (b"{}", 0))
    server.start()
    try:
        times: dict[str, list[float]] = {"shim": [], "bare": []}
        interpreter = shim.read_text().splitlines()[0].removeprefix("#!").split()[0]
        for _ in range(samples):
            for label, argv in (("shim", [str(shim)]), ("bare", [interpreter, "-I", "-S", "-c", "pass"])):
                t0 = time.perf_counter()
                _exec(argv, {"CNI_COMMAND": "VERSION"}, b"{}", {})
                times[label].append(time.perf_counter() - t0)
    finally:
        server.stop()
    report("start-up", times)
    overhead = statistics.median(times["shim"]) - statistics.median(times["bare"])
    print(f"shim overhead over a bare interpreter start (p50): {overhead * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
