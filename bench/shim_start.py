"""Start-up of the `sriov` CNI executable: VERSION (answered by the shim itself) and one call
relayed to an agent that answers at once, for the native binary and the Python shim, next to
`/bin/true` (the floor of any exec on this machine). Each sample is one posix_spawn + waitpid.
Prints p50, p90 and max per case; asserts nothing.

    .venv/bin/python bench/shim_start.py [--runs 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sriovkit.shim.install import ShimSettings, install_shim
from sriovkit.shim.server import CniSocketServer


def spawn_once(argv: list[str], env: dict[str, str]) -> float:
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    os.waitpid(pid, 0)
    return time.perf_counter() - start


def measure(label: str, argv: list[str], env: dict[str, str], runs: int) -> float:
    for _ in range(min(20, runs)):  # warm the page cache and the dentry cache
        spawn_once(argv, env)
    samples = sorted(spawn_once(argv, env) for _ in range(runs))
    p50 = statistics.median(samples)
    print(f"{label:<34} n={runs:<5} p50={p50 * 1e3:7.2f} ms  p90={samples[int(0.9 * len(samples))] * 1e3:7.2f} ms  "
          f"max={samples[-1] * 1e3:7.2f} ms")
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args, _ = parser.parse_known_args()  # ./dev bench passes its own arguments to every bench
    with tempfile.TemporaryDirectory(prefix="sriovkit-shim-bench-") as tmp:
        socket = Path(tmp) / "agent" / "cni.sock"
        native = install_shim(Path(tmp), ShimSettings(agent_socket=str(socket), native=True), name="sriov-native")
        python = install_shim(Path(tmp), ShimSettings(agent_socket=str(socket), interpreter=sys.executable),
                              name="sriov-python")
        # the agent up, as on a working node (the Python shim asks it for VERSION too)
        server = CniSocketServer(socket, lambda env, stdin: (b"{}", 0), max_concurrent=4)
        server.start()
        try:
            version = {"CNI_COMMAND": "VERSION"}
            floor = measure("/bin/true", ["/bin/true"], {}, args.runs)
            n = measure("native sriov VERSION", [str(native)], version, args.runs)
            p = measure("python shim VERSION", [str(python)], version, args.runs)
            call = {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "c1"}
            na = measure("native sriov -> instant agent", [str(native)], call, args.runs)
            pa = measure("python shim -> instant agent", [str(python)], call, args.runs)
        finally:
            server.stop()
        print(f"VERSION: native = {n / floor:.1f} x /bin/true, python shim = {p / floor:.1f} x /bin/true; "
              f"relayed call: native {na * 1e3:.2f} ms vs python shim {pa * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
