"""Crash at every step: the plugin, the agent and DEL itself SIGKILLed after each step (through the
test-only fault points of sriovkit.cni.faults); what follows must give everything back."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability import scenarios

pytestmark = pytest.mark.root



def test_plugin_killed_after_each_add_step_then_del_or_add_again(tmp_path: Path) -> None:
    scenarios.crash_add_at_every_step(tmp_path).check()


def test_del_killed_after_each_of_its_steps_then_retried(tmp_path: Path) -> None:
    scenarios.crash_del_at_every_step(tmp_path).check()


def test_agent_killed_after_each_add_step(tmp_path: Path) -> None:
    scenarios.crash_agent_at_every_step(tmp_path).check()


def test_state_writes_survive_a_kill_at_any_moment(tmp_path: Path) -> None:
    scenarios.kill_while_saving(tmp_path, rounds=15).check()


STRACE = shutil.which("strace")


@pytest.mark.skipif(STRACE is None, reason="needs strace to watch the system calls")
@pytest.mark.parametrize("complete", [True, False], ids=["record", "journal"])
def test_state_write_is_create_write_fsync_rename_fsync_dir(tmp_path: Path, complete: bool) -> None:
    """What the kernel is asked, in order: a new temp file (O_EXCL, 0600), its data written,
    renamed over the target. The journal (written before ADD's first change) is also fsynced
    before the rename and its directory after it, so the rename is durable; the committed record
    is not synced (the journal stays beside it until DEL: sriovkit.cni.state, "Durability")."""
    state, trace = tmp_path / "state", tmp_path / "trace"
    program = ("import sys\nfrom sriovkit.cni.state import AttachmentRecord, StateStore\n"
               "StateStore(sys.argv[1]).save(AttachmentRecord('c', 'n', '/x', 'net', '0000:00:01.0', 'netdev', "
               f"complete={complete}))\n")
    subprocess.run([str(STRACE), "-f", "-o", str(trace), "-e", "trace=openat,write,fsync,fdatasync,rename,renameat,"
                    "renameat2,close", sys.executable, "-c", program, str(state)], check=True, capture_output=True)
    calls = [line.split(None, 1)[1] for line in trace.read_text().splitlines() if str(state) in line
             or re.search(r"^\d+\s+(fsync|fdatasync|write)\(", line)]
    target = f"{state}/c-n.{'json' if complete else 'pending'}"
    opened = next(i for i, c in enumerate(calls) if c.startswith("openat") and "/.tmp-c-n+" in c)
    assert "O_EXCL" in calls[opened] and "O_NOFOLLOW" in calls[opened] and "0600" in calls[opened]
    fd = calls[opened].rsplit("= ", 1)[1]
    rest = calls[opened + 1:]
    wrote = next(i for i, c in enumerate(rest) if c.startswith(f"write({fd},"))
    renamed = next(i for i, c in enumerate(rest) if c.startswith("rename") and f'"{target}"' in c)
    assert wrote < renamed
    if complete:
        assert not [c for c in rest if c.startswith(("fsync(", "fdatasync("))]
        return
    synced = next(i for i, c in enumerate(rest) if c.startswith(f"fsync({fd})"))
    dir_opened = next(i for i, c in enumerate(rest) if c.startswith("openat") and f'"{state}"' in c
                      and "O_DIRECTORY" in c)
    dir_fd = rest[dir_opened].rsplit("= ", 1)[1]
    dir_synced = next(i for i, c in enumerate(rest) if i > dir_opened and c.startswith(f"fsync({dir_fd})"))
    assert wrote < synced < renamed < dir_opened < dir_synced


def test_agent_killed_after_each_del_step(tmp_path: Path) -> None:
    scenarios.crash_agent_in_del(tmp_path).check()
