"""CNI ADD/DEL on a real igb VF in the VM lab: native shim -> agent, standalone process, VERSION (issue 18).

Boots the lab once with guest/cniagent.sh (root; the lab's setup runs first), or reads the records
of an earlier boot (--records DIR: the `cniagent` directory of a `pytest -m vmlab
tests/e2e/test_cniagent.py` run, whose path that run prints), and prints:
- per path and command, n / p50 / min / max of the wall time the guest took around each exec
  (bash's $EPOCHREALTIME, no fork): `agent` = the native shim exec'd per call and served by
  `sriovctl agent` over its CNI socket (what a runtime gets on a node); `standalone` =
  `python -m sriovkit.cni.plugin` exec'd per call (the fallback's process; its VERSION, and
  `interpreter` = `python -c pass`, are the floors under its rows); `version` = VERSION,
  answered by the native shim itself (the exec floor); `paired`/`upstream` = the agent's calls
  alternated with upstream's sriov-cni (the binary bench/peers/build.sh caches, when it has one)
  on the same VF and netconf, and VERSION of each; `unprofiled`/`profiled` = the same ADD/DEL
  through a second agent run by guest/profile_agent.py, without and with cProfile; `nomodprobe` =
  that agent again with the kernel's module autoload off (/proc/sys/kernel/modprobe empty): a
  SIOCGIFINDEX for an absent name makes the kernel run modprobe for "netdev-NAME" (and for NAME),
  which is slow in this guest (busybox over 9p, emulated) and costs an exec or two on a node;
- the agent's own time per call (inside CniService.__call__, from that second agent's unprofiled
  calls) and so what the shim, the socket and the exec add;
- where the agent's ADD and DEL spend their time: cProfile around each call in the guest, the
  functions with the most own time and the sriovkit functions with the most cumulative time,
  per call (cProfile inflates many small calls: read it for where, not for how much).
The lab runs under TCG (no hardware KVM here): figures are the emulated guest's, comparable only
with each other, in one boot.

    .venv/bin/python bench/vm_cni.py [--cycles 10] [--standalone 3] [--profiled 5]
                                     [--no-upstream | --versus N]
                                     [--records DIR | --out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import pstats
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
import e2e_lab  # noqa: E402
from peers import upstream  # noqa: E402

SCRIPT = "cniagent"


def boot(args: argparse.Namespace, base: Path) -> Path:
    print(f"vmlab setup: {e2e_lab.ensure_lab(base / 'setup.log'):.1f}s", flush=True)
    env = {"VMLAB_CNI_CYCLES": str(args.cycles), "VMLAB_CNI_STANDALONE": str(args.standalone),
           "VMLAB_CNI_PROFILED": str(args.profiled), "VMLAB_CNI_MODLOG": str(args.modlog)}
    if args.peer:
        # the guest sees the host's / read-only, so the cached build's path is the guest's too
        env |= {"VMLAB_CNI_UPSTREAM": str(args.peer), "VMLAB_CNI_VERSUS": str(args.versus or args.cycles)}
    if args.baseline:
        env |= {"VMLAB_CNI_BASELINE": str(args.baseline.resolve()), "VMLAB_CNI_AB": str(args.ab)}
    # one long script, no rerun: a bench that hangs should say so, not try again
    result = e2e_lab.boot(base / "run", [SCRIPT], nics=1, guest_env=env, retries=0,
                          script_budget_s=e2e_lab.BOOT_TIMEOUT_S)
    print(f"vmlab boot: {result.wall_s:.1f}s wall, rc={result.returncode}, records in {base / 'run' / SCRIPT}")
    records = result.result(SCRIPT)
    if records.returncode != 0:
        raise SystemExit(f"guest script {SCRIPT} failed (exit {records.returncode}):\n{records.evidence()}")
    return records.dir


def read_times(records: Path) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in (records / "times.tsv").read_text().splitlines():
        path, command, _iteration, seconds, rc = line.split("\t")
        if rc != "0":
            raise SystemExit(f"{path} {command} failed in the guest: see {records}/failed-{path}-{command}-*.json")
        times[path, command].append(float(seconds))
    return times


def ms(value: float) -> str:
    return f"{value * 1e3:8.1f} ms"


def report_times(times: dict[tuple[str, str], list[float]]) -> None:
    print(f"\n{'path':<11} {'command':<8} {'n':>3} {'p50':>11} {'min':>11} {'max':>11}   (first call)")
    for (path, command), samples in times.items():
        print(f"{path:<11} {command:<8} {len(samples):>3} {ms(statistics.median(samples))} {ms(min(samples))} "
              f"{ms(max(samples))}   ({ms(samples[0]).strip()})")


def report_hop(records: Path, times: dict[tuple[str, str], list[float]]) -> dict[tuple[str, str], float]:
    """The agent's own time per unprofiled call next to the shim's wall time for the same call."""
    own: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in (records / "agent-calls.tsv").read_text().splitlines():
        command, container, seconds, profiled = line.split("\t")
        path = container.split("-")[1] if container.count("-") >= 2 else container
        if profiled == "0":
            own[path, command].append(float(seconds))
    out = {}
    print("\nthe second agent, unprofiled calls: its own time (CniService.__call__) and the rest of the shim's wall")
    for path, label in (("unprofiled", "as booted"),
                        ("nomodprobe", "kernel module autoload off (/proc/sys/kernel/modprobe empty)")):
        for command in ("ADD", "DEL"):
            wall = times.get((path, command))
            if not own[path, command] or not wall:
                continue
            inside, whole = statistics.median(own[path, command]), statistics.median(wall)
            out[path, command] = inside
            print(f"  {command} {label}: p50 wall {ms(whole).strip()}, in the agent {ms(inside).strip()}, "
                  f"shim exec + socket + rest {ms(whole - inside).strip()}")
    return out


def _name(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    for marker in ("/src/sriovkit/", "/site-packages/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        filename = Path(filename).name
    return f"{filename}:{line}({name})"


def report_profile(records: Path, name: str, command: str, top: int) -> None:
    path = records / name
    if not path.exists():
        print(f"\n(no profile of {command}: {path} missing)")
        return
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    roots = [v for f, v in raw.items() if f[2] == "__call__" and f[0].endswith("agent/cni_service.py")]
    calls = roots[0][1] if roots else 1
    total = roots[0][3] if roots else stats.total_tt  # type: ignore[attr-defined]
    print(f"\nprofile of the agent's {command} ({calls} calls, {ms(total / calls).strip()} per call under cProfile)")
    print("  most own time, per call:")
    for func, (_cc, nc, tt, _ct, _callers) in sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]:
        print(f"    {ms(tt / calls)} {tt / total:5.1%}  x{nc / calls:<5.1f} {_name(func)}")
    print("  sriovkit functions by cumulative time, per call:")
    ours = [(f, v) for f, v in raw.items() if "/src/sriovkit/" in f[0]]
    for func, (_cc, nc, _tt, ct, _callers) in sorted(ours, key=lambda kv: -kv[1][3])[:top]:
        print(f"    {ms(ct / calls)} {ct / total:5.1%}  x{nc / calls:<5.1f} {_name(func)}")


# Issue 18's figures for upstream sriov-cni v2.4 in this lab (an earlier session's boot, ms): the
# table shows them marked "recorded, not this run" when upstream's plugin did not run in this boot.
RECORDED_UPSTREAM = {"ADD": 130.0, "DEL": 111.0, "VERSION": 84.0}


def rows(times: dict[tuple[str, str], list[float]], own: dict[tuple[str, str], float],
         upstream_why: str) -> list[dict[str, object]]:
    """bench/table.py's rows. With upstream's plugin in this boot (paths `paired`/`upstream`, calls
    alternated), each row is the agent's paired p50 against upstream's; otherwise the agent's and
    the standalone process's p50 against issue 18's recorded figure. Under the CNI rows, the
    native shim's VERSION in this boot (the floor of any call that execs a binary); under the
    standalone process's, its own VERSION and a bare interpreter start (a Python process per call
    cannot go below them)."""
    out: list[dict[str, object]] = []
    p50 = {key: statistics.median(samples) * 1e3 for key, samples in times.items() if samples}
    version = p50.get(("paired", "VERSION"), p50.get(("version", "VERSION")))
    floors = [{"name": "VERSION, native shim (the exec floor, this boot)", "value": version}] if version else []
    # a Python process per call: its own start is the floor (the guest's Python is emulated)
    python_floors = [{"name": name, "value": p50[key]} for key, name in (
        (("standalone", "VERSION"), "VERSION, standalone process (interpreter + the plugin's imports, this boot)"),
        (("interpreter", "START"), "python -c pass (the interpreter alone, this boot)")) if key in p50]
    paired = ("upstream", "ADD") in p50
    for path, command, figure in (
            ("paired" if paired else "agent", "ADD", "VM lab ADD, native shim -> agent (p50)"),
            ("paired" if paired else "agent", "DEL", "VM lab DEL, native shim -> agent (p50)"),
            ("standalone", "ADD", "VM lab ADD, standalone process (p50)"),
            ("standalone", "DEL", "VM lab DEL, standalone process (p50)"),
            ("paired" if paired else "version", "VERSION", "VM lab VERSION, native shim (p50)")):
        if (path, command) not in p50:
            continue
        row: dict[str, object] = {"figure": figure, "sriovkit": p50[path, command], "unit": "ms",
                                  "upstream": p50.get(("upstream", command)),
                                  "floors": [] if command == "VERSION" else
                                  python_floors if path == "standalone" else floors}
        if row["upstream"] is None:
            row |= {"recorded": RECORDED_UPSTREAM[command], "recorded_why": upstream_why}
        out.append(row)
    for (path, command), seconds in own.items():
        if path == "unprofiled":
            out.append({"figure": f"VM lab {command}, the agent's own time (p50)", "sriovkit": seconds * 1e3,
                        "upstream": None, "unit": "ms"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=10, help="ADD+DEL cycles through the agent (and VERSIONs)")
    parser.add_argument("--standalone", type=int, default=3, help="ADD+DEL cycles of the standalone process")
    parser.add_argument("--profiled", type=int, default=5,
                        help="cycles through the second agent, unprofiled and then profiled (0: no profile)")
    parser.add_argument("--modlog", type=int, default=0,
                        help="cycles more with each kernel module request logged (modprobe.log, agent.strace)")
    parser.add_argument("--baseline", type=Path,
                        help="another tree's src/ (e.g. main's, exported): its agent and this tree's, "
                             "side by side in the same boot, cycles alternated (paths baseline, current)")
    parser.add_argument("--ab", type=int, default=8, help="alternated cycles with --baseline")
    parser.add_argument("--no-upstream", action="store_true",
                        help="do not run upstream's sriov-cni (bench/peers/build.sh's) beside the agent")
    parser.add_argument("--versus", type=int, default=0,
                        help="alternated agent/upstream cycles when upstream's plugin is built (default: --cycles)")
    parser.add_argument("--records", type=Path, help="read this cniagent records directory instead of booting")
    parser.add_argument("--out", type=Path, help="keep the boot's records here (default: a temporary directory)")
    parser.add_argument("--top", type=int, default=15, help="profile lines per listing")
    parser.add_argument("--json", help="also write the figures here (for bench/table.py)")
    args = parser.parse_args()
    args.peer, why = (None, "--no-upstream") if args.no_upstream or args.records else upstream.peer_binary("cni")
    if args.records:
        why = "read from --records"
    print(f"upstream sriov-cni: {args.peer or 'not run: ' + why}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-vm-cni-") as tmp:
        records = args.records or boot(args, args.out or Path(tmp))
        times = read_times(records)
        report_times(times)
        own = report_hop(records, times) if (records / "agent-calls.tsv").exists() else {}
        report_profile(records, "agent.prof", "ADD", args.top)
        report_profile(records, "agent-del.prof", "DEL", args.top)
    if args.json:
        why = f"upstream's sriov-cni did not run in this boot ({why}); its figure is from an earlier boot"
        Path(args.json).write_text(json.dumps(rows(times, own, why)))


if __name__ == "__main__":
    main()
