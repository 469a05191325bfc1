"""sriovkit.atomicfile: whole or not at all, never through a planted link, mode as asked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sriovkit import atomicfile


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755])
def test_replace_writes_the_data_with_the_mode_asked_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    old_umask = os.umask(0o077)
    try:
        atomicfile.replace(target, b"new", mode=mode)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new" and _mode(target) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("durable", [True, False])
def test_replace_leaves_no_temp_file_and_the_old_file_when_the_rename_fails(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "d"
    target.mkdir()
    (target / "inside").write_text("x")  # a non-empty directory cannot be renamed over
    with pytest.raises(OSError):
        atomicfile.replace(target, b"new", durable=durable)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and (target / "inside").read_text() == "x"


def test_a_link_planted_at_a_named_temp_file_is_removed_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "dir").mkdir()
    os.link(victim, tmp_path / "dir" / ".tmp-x")
    os.symlink(victim, tmp_path / "dir" / ".tmp-y")
    atomicfile.replace(tmp_path / "dir" / "x", b"data", tmp_name=".tmp-x")
    atomicfile.replace(tmp_path / "dir" / "y", b"data", tmp_name=".tmp-y")
    assert victim.read_text() == "keep"
    assert (tmp_path / "dir" / "x").read_bytes() == (tmp_path / "dir" / "y").read_bytes() == b"data"
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["x", "y"]


@pytest.mark.parametrize("durable", [True, False])
def test_create_new_at_takes_only_a_free_name(tmp_path: Path, durable: bool) -> None:
    (tmp_path / "taken").write_text("theirs")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        written = atomicfile.create_new_at(fd, "free", b"ours", mode=0o640, durable=durable)
        assert atomicfile.create_new_at(fd, "taken", b"ours", durable=durable) is None
    finally:
        os.close(fd)
    assert written is not None and (tmp_path / "free").stat().st_ino == written.st_ino
    assert (tmp_path / "free").read_bytes() == b"ours" and _mode(tmp_path / "free") == 0o640
    assert (tmp_path / "taken").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["free", "taken"]
