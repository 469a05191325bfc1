"""Soak (root): the node agent's RSS, threads and descriptors over many CNI calls, through its
real CNI socket on a veth-backed simulated node, each pod (ADD then DEL) in a fresh network
namespace. Prints one line per WINDOW calls and the RSS slope before and after the warm-up.

    .venv/bin/python bench/soak.py [--calls 20000] [--window 1000] [--warmup 2]

Exit status 1 when memory, threads or descriptors keep growing after the warm-up (see
tests/reliability/scenarios/soak.py for the rule), or a call failed or something leaked.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the scenario lives with the tests it is shared with

from tests.reliability.scenarios.soak import Sample, growth_verdict, slope_kb_per_call, soak_agent  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000, help="CNI calls in all (half ADD, half DEL)")
    parser.add_argument("--window", type=int, default=1000, help="calls between samples")
    parser.add_argument("--warmup", type=int, default=2, help="windows of warm-up before growth is judged")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("soak: needs root (network namespaces, veths)", file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"{'CALLS':>7}  {'RSS MB':>7}  {'THREADS':>7}  {'FDS':>4}  {'SECONDS':>7}", flush=True)

    def show(sample: Sample) -> None:
        print(f"{sample.calls:>7}  {sample.rss_kb / 1024:>7.1f}  {sample.threads:>7}  {sample.fds:>4}  "
              f"{time.monotonic() - started:>7.1f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sriovkit-soak-") as tmp:
        run, leaks = soak_agent(Path(tmp), args.calls, window=args.window, on_sample=show)
    samples = run.samples
    warm, late = samples[: args.warmup + 1], samples[args.warmup:]
    print(f"RSS slope: warm-up {slope_kb_per_call(warm):.2f} KB/call, after {slope_kb_per_call(late):.2f} KB/call; "
          f"{(samples[-1].rss_kb - samples[0].rss_kb) / 1024:+.1f} MB over {samples[-1].calls} calls")
    verdict = growth_verdict(samples, args.warmup)
    for line in [*run.failures, *leaks, *([verdict] if verdict else [])]:
        print(line)
    return 1 if run.failures or leaks or verdict else 0


if __name__ == "__main__":
    sys.exit(main())
