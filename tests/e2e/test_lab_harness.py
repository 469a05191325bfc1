"""The VM lab's own machinery, on the host: guest/run.sh's per-script budget (a hung script is
reported, killed, and ends the boot) and how the host picks each script's records across boots."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import e2e_lab
import pytest


@pytest.fixture
def guest_dir(tmp_path: Path) -> Iterator[Path]:
    """A copy of guest/run.sh beside scenario scripts of the test's own."""
    here = tmp_path / "guest"
    here.mkdir()
    shutil.copy(e2e_lab.GUEST_DIR / "run.sh", here / "run.sh")
    yield here
    # whatever a failed assertion left running (the hung script's sleep carries a marker)
    for pid in _pids_with(str(tmp_path)):
        os.kill(pid, signal.SIGKILL)


def _pids_with(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _script(guest_dir: Path, name: str, body: str) -> None:
    (guest_dir / f"{name}.sh").write_text(f"#!/bin/bash\n{body}\n")


def _run(guest_dir: Path, out: Path, *scripts: str, budget: int) -> subprocess.CompletedProcess[str]:
    out.mkdir()
    return subprocess.run(["bash", str(guest_dir / "run.sh"), str(out), "/nonexistent/sriovctl", *scripts],
                          env=dict(os.environ, VMLAB_SCRIPT_BUDGET=str(budget)), capture_output=True,
                          text=True, timeout=60, check=False)


def test_scripts_run_in_turn_with_their_status_log_and_prefixed_output(guest_dir: Path, tmp_path: Path) -> None:
    _script(guest_dir, "first", 'echo "first got $1 and $2"; echo oops >&2; exit 3')
    _script(guest_dir, "second", "echo second")
    out = tmp_path / "out"
    proc = _run(guest_dir, out, "first", "second", budget=30)
    assert proc.returncode == 0, proc.stderr
    assert (out / "first" / "rc").read_text().strip() == "3"
    assert (out / "second" / "rc").read_text().strip() == "0"
    assert (out / "first" / "guest.log").read_text() == f"first got {out / 'first'} and /nonexistent/sriovctl\noops\n"
    assert f"[first] first got {out / 'first'}" in proc.stdout and "[second] second" in proc.stdout
    assert "[first] exit=3 guest_seconds=" in proc.stdout
    assert not (out / "first" / "hung").exists()


def test_a_script_past_its_budget_is_reported_killed_and_ends_the_boot(guest_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    # a child that would outlive its script: the budget must take the script's whole session
    _script(guest_dir, "stuck", f'echo waiting; bash -c "sleep 1000; : {marker}" & wait')
    _script(guest_dir, "later", "echo later")
    out = tmp_path / "out"
    start = time.monotonic()
    proc = _run(guest_dir, out, "stuck", "later", budget=2)
    assert time.monotonic() - start < 30
    assert proc.returncode == 124
    assert (out / "stuck" / "hung").exists() and (out / "stuck" / "rc").read_text().strip() == "124"
    report = (out / "stuck" / "hung.txt").read_text()
    assert "still running after 2s" in report
    # the stuck process is named with its state and wait channel
    (sleep_line,) = [line for line in report.splitlines() if str(marker) in line]
    assert " state S " in sleep_line and "wchan" in sleep_line
    assert "[stuck hung] guest script stuck still running" in proc.stdout
    assert "[stuck] exit=124" in proc.stdout
    assert not (out / "later").exists(), "the boot goes on after a hung script"
    deadline = time.monotonic() + 5
    while _pids_with(str(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pids_with(str(marker)), "the hung script's processes were left running"


def _attempt(out_dir: Path, scripts: list[str], finished: dict[str, str]) -> e2e_lab.Attempt:
    """A boot whose scripts in `finished` wrote an rc ("hung" marks one run.sh gave up on)."""
    for script, how in finished.items():
        (out_dir / script).mkdir(parents=True)
        (out_dir / script / "rc").write_text("124\n" if how == "hung" else f"{how}\n")
        if how == "hung":
            (out_dir / script / "hung").touch()
    return e2e_lab.Attempt(out_dir, tuple(scripts), 0, "# vmlab: accel=tcg\n", 1.0)


def test_the_records_of_a_rerun_script_are_read_from_the_boot_that_ran_it(tmp_path: Path) -> None:
    first = _attempt(tmp_path, ["a", "b", "c"], {"a": "0", "b": "hung"})
    assert first.unfinished() == ["b", "c"]
    second = _attempt(tmp_path / "retry1", ["b", "c"], {"b": "0", "c": "1"})
    boot = e2e_lab.Boot(1, (first, second))
    assert boot.result("a").dir == tmp_path / "a"
    assert boot.result("b").dir == tmp_path / "retry1" / "b" and boot.result("b").returncode == 0
    assert boot.result("c").returncode == 1
    history = boot.history()
    assert "b: hung" in history and "c: never ran" in history and "c: exit 1" in history


def test_a_script_no_boot_ran_says_what_each_boot_did(tmp_path: Path) -> None:
    first = _attempt(tmp_path, ["a", "b"], {"a": "hung"})
    second = e2e_lab.Attempt(tmp_path / "retry1", ("a", "b"), 255, "x\n# vmlab: accel=tcg qemu_rc=124\n", 2.0)
    result = e2e_lab.Boot(1, (first, second)).result("b")
    assert result.returncode is None
    evidence = result.evidence()
    assert "a: hung" in evidence and "b: never ran" in evidence
    # the last boot's own lines close it, with where its whole output is
    assert evidence.endswith(f"(all in {tmp_path / 'retry1' / 'boot.log'}):\nx\n# vmlab: accel=tcg qemu_rc=124")



def test_the_console_keeps_first_and_last_of_a_run_that_differs_only_in_numbers(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text("boot\n[  588.6] timed out 433 ms\n[  596.6] timed out 441 ms\n[ 1000.6] timed out 845 ms\n"
                       "end\na 1\na 2\n")
    proc = subprocess.run(["awk", "-f", str(e2e_lab.VMLAB_DIR / "collapse.awk"), str(console)],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == [
        "boot", "[  588.6] timed out 433 ms", "    ... 1 more like it ...", "[ 1000.6] timed out 845 ms", "end",
        "a 1", "a 2"]
