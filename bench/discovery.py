"""Discovery + pool building on simulated hosts from 64 to 4096 VFs.

Prints one row per size: best-of-N wall time for discovery alone and for
discovery plus pools, and the peak Python memory the two allocate
(tracemalloc, measured in a separate run so it does not slow the timing).
Target: 4096 VFs in under 0.3 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

from sriovkit.host.discover import discover
from sriovkit.host.sysfs import Sysfs
from sriovkit.output import format_table
from sriovkit.resources.config import parse_config
from sriovkit.resources.pools import build_pools
from sriovkit.sim import host as sim

SIZES = (64, 256, 1024, 2048, 4096)
VFS_PER_PF = 128

CONFIG = parse_config({"resourceList": [
    {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}},
    {"resourceName": "low", "selectors": {"pfNames": [f"ens{i}f0#0-63" for i in range(64)]}},
    {"resourceName": "rest", "selectors": [{"vendors": ["8086"], "drivers": ["iavf"]}, {"linkTypes": ["ether"]}]},
]})


def build_host(root: Path, num_vfs: int) -> None:
    pfs = []
    for i in range(max(1, num_vfs // VFS_PER_PF)):
        count = min(VFS_PER_PF, num_vfs - i * VFS_PER_PF)
        pfs.append({"name": f"ens{i}f0", "numVfs": count, "totalVfs": VFS_PER_PF, "numaNode": i % 2,
                    "vfDrivers": {"0-7": "vfio-pci"}})
    sim.create(root, {"pfs": pfs})


def best_of(repeats: int, func) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(root: Path, repeats: int) -> list[str]:
    sysfs = Sysfs(root)
    t_disc = best_of(repeats, lambda: discover(sysfs))
    t_all = best_of(repeats, lambda: build_pools(discover(sysfs), CONFIG))
    tracemalloc.start()
    pools = build_pools(discover(sysfs), CONFIG)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pooled = sum(len(p.devices) for p in pools.pools)
    return [f"{t_disc * 1000:.1f}", f"{t_all * 1000:.1f}", f"{peak / 2**20:.1f}", str(pooled)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sriovkit-bench-") as tmp:
        for size in args.sizes:
            root = Path(tmp) / f"h{size}"
            build_host(root, size)
            rows.append([str(size), *measure(root, args.repeats)])
    print(format_table(["VFS", "DISCOVER ms", "DISCOVER+POOLS ms", "PEAK MiB", "POOLED"], rows))


if __name__ == "__main__":
    main()
