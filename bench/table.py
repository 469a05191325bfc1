"""`./dev bench`: the side-by-side table, figure | sriovkit | upstream | ratio, from one run.

Runs bench/deviceplugin.py (sriovkit's agent and upstream's sriovdp, interleaved rounds),
bench/cni_latency.py (ADD/DEL through the shim and agent next to the kernel + host-local floor),
bench/churn.py (64 pods at once next to the serial netns-move floor) and bench/vm_cni.py (ADD/DEL
on a real igb VF in the VM lab through the native shim and agent, and standalone), each in its own
process, prints their detail, then one table. A row's reference is upstream's figure from this
run; while upstream cannot be built here (the Go module proxy refuses it: bench/peers/build.sh
says why), issue 18's recorded figure, marked "recorded, not this run"; for a row upstream
has no figure for, the floor measured in the same run. Under a row, the floors measured beside it
(a bare Python and a bare Go grpc server for Allocate and memory), compared with the same
reference. Ratio = sriovkit (or floor) / reference (below 1: ahead). Last, for each row behind,
what stops it.

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
sys.path.insert(0, str(HERE))
from procs import MachineCpu, machine_cpu  # noqa: E402  (bench/ is a directory of scripts, not a package)

BENCHES = {
    "deviceplugin.py": (["--rounds", "3"], ["--rounds", "1", "--calls", "300", "--flips", "2"]),
    "cni_latency.py": (["--cycles", "100", "--standalone", "0", "--startup", "0"],
                       ["--cycles", "30", "--standalone", "0", "--startup", "0"]),
    "churn.py": ([], ["--pods", "16"]),
    # boots the VM lab once (root; minutes under TCG): ADD/DEL on a real igb VF through the native shim
    "vm_cni.py": (["--cycles", "10", "--standalone", "3", "--profiled", "0"],
                  ["--cycles", "3", "--standalone", "1", "--profiled", "0"]),
}


def run(script: str, args: list[str], out: Path, machine: dict[str, MachineCpu]) -> list[dict[str, object]]:
    """One bench script's rows; what the machine did while it ran goes into `machine`."""
    print(f"== bench/{script} {' '.join(args)}", flush=True)
    before = machine_cpu()
    proc = subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(out)], check=False)
    machine[script] = machine_cpu() - before
    if proc.returncode != 0 or not out.exists():
        print(f"(bench/{script} failed: exit {proc.returncode})")
        return []
    return json.loads(out.read_text())


def cell(value: object, unit: str) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    digits = 3 if unit == "ms" and value < 10 else 2 if unit == "s" else 1
    return f"{value:.{digits}f} {unit}"


def _ratio(ours: object, ref: object) -> float | None:
    ok = isinstance(ours, int | float) and isinstance(ref, int | float) and ref and not math.isnan(ours)
    return ours / ref if ok else None  # type: ignore[operator]


def reference(row: dict[str, object]) -> tuple[object, str]:
    """What a row's sriovkit figure is compared with, and how the upstream column says it: upstream's
    figure from this run; else issue 18's recorded one, marked so; else the row's measured floor."""
    if row.get("upstream") is not None:
        return row["upstream"], ""
    if row.get("recorded") is not None:
        return row["recorded"], " (recorded, not this run)"
    if row.get("floor") is not None:
        return row["floor"], " (floor, this run)"
    return None, ""


def table(rows: list[dict[str, object]]) -> str:
    """One line per figure; under it, one line per floor measured beside it (its value in the
    sriovkit column, compared with the same reference: a floor's ratio above 1 is what stops the
    row, whatever sriovkit does)."""
    lines = []
    for row in rows:
        ours, unit = row.get("sriovkit"), str(row.get("unit", ""))
        ref, label = reference(row)
        ratio = _ratio(ours, ref)
        lines.append([row["figure"], cell(ours, unit), cell(ref, unit) + label if ref is not None else "-",
                      f"{ratio:.2f}" if ratio is not None else "-"])
        for floor in row.get("floors") or []:  # type: ignore[attr-defined]
            fr = _ratio(floor["value"], ref)
            lines.append([f"  floor: {floor['name']}", cell(floor["value"], unit),
                          cell(ref, unit) + label if ref is not None else "-", f"{fr:.2f}" if fr is not None else "-"])
    return format_table(["figure", "sriovkit", "upstream", "ratio"], lines)


def stops(rows: list[dict[str, object]]) -> list[str]:
    """For each row behind its reference (ratio above 1), what stops it: the floors measured beside
    it, each as a multiple of the reference, and sriovkit over the floor."""
    out = []
    for row in rows:
        ours = row.get("sriovkit")
        ref, label = reference(row)
        ratio = _ratio(ours, ref)
        if ratio is None or ratio <= 1.0:
            continue
        floors = list(row.get("floors") or [])  # type: ignore[call-overload]
        against_floor = row.get("upstream") is None and row.get("recorded") is None and row.get("floor") is not None
        if against_floor:
            head = (f"- {row['figure']}: {ratio:.2f}x its floor (the same kernel work, and IPAM where named, "
                    "done by a minimal loop in this run)")
            out.append(head + ("; " + "; ".join(_over_floors(ours, ref, floors, "the floor")) if floors
                               else ": the rest is sriovkit's"))
            continue
        if not floors:
            out.append(f"- {row['figure']}: {ratio:.2f}x upstream{label}; no floor measured beside it")
            continue
        out.append(f"- {row['figure']}: {ratio:.2f}x upstream{label}; " + "; ".join(_over_floors(ours, ref, floors)))
    return out


def _over_floors(ours: object, ref: object, floors: list[dict[str, object]], ref_name: str = "upstream") -> list[str]:
    """Each floor as a multiple of the row's reference, and sriovkit as a multiple of the floor."""
    parts = []
    for floor in floors:
        fr, over = _ratio(floor["value"], ref), _ratio(ours, floor["value"])
        parts.append(f"{str(floor['name']).split(' (')[0]} is {fr:.2f}x {ref_name}, sriovkit {over:.2f}x it"
                     if fr is not None and over is not None else f"{floor['name']}: -")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples (a smoke run)")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    machine: dict[str, MachineCpu] = {}
    with tempfile.TemporaryDirectory(prefix="bench-table-") as tmp:
        for script, (full, quick) in BENCHES.items():
            rows += run(script, quick if args.quick else full, Path(tmp) / f"{script}.json", machine)
    print()
    print(table(rows))
    print(f"(machine: {os.cpu_count()} CPUs, shared with other work and noisy: figures are medians of "
          "interleaved runs, compare within one run only)")
    print(f"(the machine while each ran: {'; '.join(f'{s}: {m.shares()}' for s, m in machine.items())})")
    why = next((str(r["recorded_why"]) for r in rows if r.get("recorded_why")), "")
    if why:
        print(f"(upstream not run here, so its column holds issue 18's recorded figures: {why})")
    lines = stops(rows)
    if lines:
        print("What stops each row behind its reference:")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
