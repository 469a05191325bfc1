"""Reliability report (root): crashes, races, restarts, hostile input and exposure on a veth-backed
simulated node, one row per scenario — cases tried, failures, leaks found, seconds — so releases
can be compared. The scenarios are `tests/reliability/scenarios/`, the ones `tests/reliability/`
runs in CI; by default at CI sizes, with `--full` at full size (races 32 loops x 100 cycles over
8 VFs, 2000 fuzz examples, more restarts). Restart rows also hold re-registration to 1 s.

    .venv/bin/python bench/reliability_report.py [--full] [--only NAME,...] [--race-cycles N]

Exit status 1 when any row has a failure or a leak; their first lines are printed below the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the scenarios live with the tests they are shared with

from tests.reliability import scenarios  # noqa: E402

Scenario = Callable[[Path], scenarios.Outcome]
REGISTRATION_BUDGET_S = 1.0


def plan(full: bool, race_cycles: int | None) -> list[tuple[str, Scenario]]:
    cycles = race_cycles or (100 if full else 10)
    budget = REGISTRATION_BUDGET_S
    return [
        ("crash-add", scenarios.crash_add_at_every_step),
        ("crash-del", scenarios.crash_del_at_every_step),
        ("crash-agent", lambda t: scenarios.crash_agent_at_every_step(t, every=1 if full else 2)),
        ("crash-agent-del", scenarios.crash_agent_in_del),
        ("crash-save", lambda t: scenarios.kill_while_saving(t, rounds=60 if full else 15)),
        ("races", lambda t: scenarios.races(t, workers=32, cycles=cycles, vfs=8)),
        ("races-same-vf", lambda t: scenarios.same_vf_at_once(t, rounds=20 if full else 4)),
        ("races-late-del", lambda t: scenarios.late_del_of_an_old_pod(t, rounds=12 if full else 6)),
        ("restart-agent", lambda t: scenarios.agent_restart_with_pods(t, rounds=10 if full else 2,
                                                                      registration_budget_s=budget)),
        ("restart-kubelet", lambda t: scenarios.kubelet_restart(t, rounds=10 if full else 2,
                                                                registration_budget_s=budget)),
        ("fuzz", lambda t: scenarios.fuzz_cni(t, 2000 if full else 300)),
        ("hostile-pod", scenarios.pod_renames),
        ("hostile-paths", scenarios.caller_paths),
        ("gc-lists", scenarios.gc_lists),
        ("kill-stream", lambda t: scenarios.kill_stream(t, vfs=8 if full else 4, cycles=25 if full else 6)),
        ("no-shell", lambda t: scenarios.no_shell_in_product()),
        ("modes", scenarios.modes),
        ("dp-edges", scenarios.device_plugin_edges),
        ("stall", lambda t: scenarios.socket_attacks(t, full=full)),
        ("soak", lambda t: scenarios.memory_soak(t, 20000 if full else 2000, window=1000 if full else 200, warmup=5)),
        ("second-agent", scenarios.second_agent),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full sizes (races 32 x 100; takes tens of minutes)")
    parser.add_argument("--only", default="", help="run only the scenarios whose short name contains one of "
                        "these, comma-separated: " + ", ".join(name for name, _ in plan(False, None)))
    parser.add_argument("--race-cycles", type=int, help="cycles per race loop (default 10, 100 with --full)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("reliability_report: needs root (network namespaces, veths)", file=sys.stderr)
        return 2
    rows: list[tuple[scenarios.Outcome, float]] = []
    wanted = [w for w in args.only.split(",") if w]
    for name, scenario in plan(args.full, args.race_cycles):
        if wanted and not any(w in name for w in wanted):
            continue
        with tempfile.TemporaryDirectory(prefix="sriovkit-rel-") as tmp:
            started = time.monotonic()
            outcome = scenario(Path(tmp))
            took = time.monotonic() - started
        rows.append((outcome, took))
        print(f"  {outcome.line()} ({took:.1f} s)", file=sys.stderr, flush=True)
    print_table(rows, "full" if args.full else "CI")
    return 1 if any(o.failures or o.leaks for o, _ in rows) else 0


def print_table(rows: list[tuple[scenarios.Outcome, float]], size: str) -> None:
    width = max([len("SCENARIO"), *(len(o.scenario) for o, _ in rows)])
    print(f"\nsriovkit reliability report ({size} size)")
    print(f"{'SCENARIO':<{width}}  {'TRIED':>6}  {'FAILURES':>8}  {'LEAKS':>5}  {'SECONDS':>7}")
    for outcome, took in rows:
        print(f"{outcome.scenario:<{width}}  {outcome.tried:>6}  {len(outcome.failures):>8}  "
              f"{len(outcome.leaks):>5}  {took:>7.1f}")
    total = sum(o.tried for o, _ in rows), sum(len(o.failures) for o, _ in rows), sum(len(o.leaks) for o, _ in rows)
    print(f"{'TOTAL':<{width}}  {total[0]:>6}  {total[1]:>8}  {total[2]:>5}  {sum(t for _, t in rows):>7.1f}")
    for outcome, _ in rows:
        if outcome.failures or outcome.leaks:
            print("\n" + outcome.explain())


if __name__ == "__main__":
    sys.exit(main())
