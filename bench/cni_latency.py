"""CNI ADD+DEL latency on veth-backed VFs of a simulated host (root).

Runs N cycles of ADD then DEL through `run_cni` in this process (the path the
node agent takes, without its socket) and, with --standalone, through
``python -m sriovkit.cni.plugin`` as a runtime would exec it. Prints p50, p99
and max per command. The config uses vlan, spoofchk, mac and host-local IPAM,
so every kind of step is in the numbers.

    .venv/bin/python bench/cni_latency.py --cycles 200 [--standalone 20]
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

from sriovkit.cni.context import CniContext
from sriovkit.cni.plugin import run_cni
from sriovkit.host import sim
from sriovkit.host.simnet import attach_veths
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.select import netlink_for

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
            print(f"{label:<12} {command:<4} n={len(samples):<5} p50={statistics.median(samples) * 1e3:7.2f} ms "
                  f"p99={percentile(samples, 0.99) * 1e3:7.2f} ms max={max(samples) * 1e3:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=100, help="in-process ADD+DEL cycles")
    parser.add_argument("--standalone", type=int, default=0, help="cycles through a plugin subprocess")
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
    times: dict[str, list[float]] = {"ADD": [], "DEL": []}
    for _ in range(args.cycles):
        cycle(lambda e, s: run_cni(e, s, ctx), env, stdin, times)
    report("in-process", times)
    if args.standalone:
        proc_env = {"SRIOVKIT_HOST_ROOT": str(host.root), "SRIOVKIT_CNI_STATE_DIR": state_dir,
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

        def exec_plugin(e: dict[str, str], s: bytes) -> tuple[bytes, int]:
            p = subprocess.run([sys.executable, "-m", "sriovkit.cni.plugin"], input=s, env={**proc_env, **e},
                               capture_output=True, check=False)
            return p.stdout, p.returncode

        times = {"ADD": [], "DEL": []}
        for _ in range(args.standalone):
            cycle(exec_plugin, env, stdin, times)
        report("standalone", times)
    ctx.netlink.close()


if __name__ == "__main__":
    main()
