"""`./dev bench`: the side-by-side table, figure | sriovkit | upstream | ratio, from one run.

Runs bench/deviceplugin.py (sriovkit's agent and upstream's sriovdp, interleaved rounds),
bench/cni_latency.py (ADD/DEL through the shim and agent next to the kernel + host-local floor)
and bench/churn.py (64 pods at once next to the serial netns-move floor), each in its own
process, prints their detail, then one table. Where a row has no upstream peer here, its
reference is the measured floor, marked so. Ratio = sriovkit / reference (below 1: ahead).

    .venv/bin/python bench/table.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sriovkit.output import format_table

HERE = Path(__file__).resolve().parent

BENCHES = {
    "deviceplugin.py": (["--rounds", "3"], ["--rounds", "1", "--calls", "300", "--flips", "2"]),
    "cni_latency.py": (["--cycles", "100", "--standalone", "0", "--startup", "0"],
                       ["--cycles", "30", "--standalone", "0", "--startup", "0"]),
    "churn.py": ([], ["--pods", "16"]),
}


def run(script: str, args: list[str], out: Path) -> list[dict[str, object]]:
    print(f"== bench/{script} {' '.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(out)], check=False)
    if proc.returncode != 0 or not out.exists():
        print(f"(bench/{script} failed: exit {proc.returncode})")
        return []
    return json.loads(out.read_text())


def cell(value: object, unit: str) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    digits = 3 if unit == "ms" and value < 10 else 2 if unit == "s" else 1
    return f"{value:.{digits}f} {unit}"


def table(rows: list[dict[str, object]]) -> str:
    lines = []
    for row in rows:
        ours, unit = row.get("sriovkit"), str(row.get("unit", ""))
        ref, label = row.get("upstream"), ""
        if ref is None and row.get("floor") is not None:
            ref, label = row["floor"], " (floor)"
        ratio = ours / ref if isinstance(ours, int | float) and isinstance(ref, int | float) and ref else None
        lines.append([row["figure"], cell(ours, unit), cell(ref, unit) + label if ref is not None else "-",
                      f"{ratio:.2f}" if ratio is not None else "-"])
    return format_table(["figure", "sriovkit", "upstream", "ratio"], lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples (a smoke run)")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-table-") as tmp:
        for script, (full, quick) in BENCHES.items():
            rows += run(script, quick if args.quick else full, Path(tmp) / f"{script}.json")
    print()
    print(table(rows))
    print(f"(machine: {os.cpu_count()} CPUs, shared with other work and noisy: figures are medians of "
          "interleaved runs, compare within one run only)")


if __name__ == "__main__":
    main()
