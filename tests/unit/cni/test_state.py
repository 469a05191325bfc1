"""The state store: private, atomic, symlink-proof; per-VF locks across threads and processes."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.cni.state import AttachmentRecord, LockTimeout, OriginalState, StateStore

PCI = "0000:12:00.1"


def record(cid: str = "c1", ifname: str = "net1", pci: str = PCI) -> AttachmentRecord:
    return AttachmentRecord(container_id=cid, ifname=ifname, netns="/run/netns/x", network="n", pci_address=pci,
                            mode="netdev", pf_netdev="pf0", vf_index=1,
                            original=OriginalState(host_ifname="pf0v1", mac="02:00:00:00:00:01", mtu=1500, up=True,
                                                   vf={"vf_index": 1, "vlan": 0}),
                            changed_vf=["vlan"])


def test_save_load_delete_with_private_modes(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    store.save(record())
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    path = tmp_path / "state" / "c1-net1.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = store.load("c1", "net1")
    assert loaded == record()
    assert store.owner_of(PCI) == record()
    assert store.owner_of("0000:12:00.2") is None
    store.delete("c1", "net1")
    store.delete("c1", "net1")  # twice is fine
    assert store.load("c1", "net1") is None
    assert [p.name for p in (tmp_path / "state").iterdir()] == []  # no temp files left


def test_symlinks_refused(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    outside = tmp_path / "outside.json"
    outside.write_text(record().to_json())
    (root / "c1-net1.json").symlink_to(outside)
    store = StateStore(str(root))
    with pytest.raises(CniError) as err:
        store.load("c1", "net1")
    assert "symlink" in err.value.msg
    with pytest.raises(CniError):
        store.save(record())
    assert outside.read_text() == record().to_json()
    assert store.records() == []


def test_state_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(CniError) as err:
        StateStore(str(tmp_path / "link")).save(record())
    assert err.value.code == ErrorCode.IO_FAILURE


def test_corrupt_record_is_an_io_error(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    (tmp_path / "c1-net1.json").write_text("{half")
    with pytest.raises(CniError) as err:
        store.load("c1", "net1")
    assert "corrupt" in err.value.msg


def test_lock_excludes_threads_of_one_process(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    inside = []
    peak = []

    def worker() -> None:
        with store.lock(PCI, 5):
            inside.append(1)
            peak.append(len(inside))
            time.sleep(0.02)
            inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(peak) == 1 and len(peak) == 6


def _hold(root: str, ready: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event) -> None:
    with StateStore(root).lock(PCI, 5):
        ready.set()
        release.wait(10)


def test_lock_times_out_against_another_process(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockTimeout) as err, StateStore(str(tmp_path)).lock(PCI, 0.1):
            pass
        assert err.value.code == ErrorCode.TRY_AGAIN
        with StateStore(str(tmp_path)).lock("0000:12:00.2", 0.1):
            pass  # another VF is not blocked
    finally:
        release.set()
        proc.join(10)
    with StateStore(str(tmp_path)).lock(PCI, 1):
        pass


def test_journal_of_an_add_in_progress(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    journal = record()
    journal.complete = False
    store.save(journal)
    assert (tmp_path / "c1-net1.pending").exists()
    assert store.load("c1", "net1") is None  # not an attachment yet
    assert store.load("c1", "net1", pending=True) == journal
    assert store.records() == [] and store.records(pending=True) == [journal]
    assert store.owner_of(PCI) == journal  # the VF is taken while an ADD works on it
    store.save(record())
    assert store.load("c1", "net1", pending=True) == record()  # the committed record wins
    store.delete("c1", "net1", only_pending=True)
    assert store.records(pending=True) == [record()]
    store.delete("c1", "net1")
    assert list(tmp_path.iterdir()) == []


def test_the_journal_stays_beside_its_committed_record_until_del(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    journal = record()
    journal.complete = False
    store.save(journal)
    store.save(record())
    assert (tmp_path / "c1-net1.pending").exists()  # the durable description until DEL
    assert store.load("c1", "net1", pending=True) == record()  # the committed record wins
    assert store.records(pending=True) == [record()]  # one per attachment
    assert store.owner_of(PCI) == record()
    store.delete("c1", "net1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("torn", [b"", b'{"container_id": "c1", "ifn'], ids=["empty", "torn"])
def test_a_record_a_power_cut_left_unreadable_gives_way_to_its_journal(tmp_path: Path, torn: bytes) -> None:
    """The record is not fsynced (the journal is): after a power cut it may be there empty or
    torn. Its journal then describes the attachment; without a journal it is still an error."""
    store = StateStore(str(tmp_path))
    journal = record()
    journal.complete = False
    store.save(journal)
    (tmp_path / "c1-net1.json").write_bytes(torn)
    assert store.load("c1", "net1", pending=True) == journal
    assert store.records(pending=True) == [journal]
    assert store.owner_of(PCI) == journal
    with pytest.raises(CniError):
        store.load("c1", "net1")  # CHECK reads committed records only: still refused
    store.delete("c1", "net1", only_pending=True)
    with pytest.raises(CniError):
        store.load("c1", "net1", pending=True)
    store.delete("c1", "net1")
    assert list(tmp_path.iterdir()) == []


def test_owner_of_finds_the_vf_among_many_records(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    for n in range(20):
        store.save(record(cid=f"c{n}", pci=f"0000:12:{n // 8:02x}.{n % 8}"))
    journal = record(cid="late", pci="0000:13:00.0")
    journal.complete = False
    store.save(journal)
    # the address in another field of another record (its config) makes that one no owner
    store.save(AttachmentRecord(container_id="cfg", ifname="net1", netns="/x", network="n",
                                pci_address="0000:14:00.0", mode="netdev",
                                config='{"deviceID": "0000:12:00.5"}'))
    assert store.owner_of("0000:12:00.5") == record(cid="c5", pci="0000:12:00.5")
    assert store.owner_of("0000:13:00.0") == journal
    assert store.owner_of("0000:12:07.7") is None
    (tmp_path / "c5-net1.json").unlink()
    assert store.owner_of("0000:12:00.5") is None


def test_owner_markers_point_at_the_one_record_to_read(tmp_path: Path) -> None:
    """Each attachment leaves an empty `.owner+<pci>+<key>` beside its journal and record; the
    check reads the record it names, and a marker whose record is gone or names another VF makes
    no owner. DEL removes the marker with the files it points at."""
    store = StateStore(str(tmp_path))
    journal = record(cid="c1", pci="0000:12:00.1")
    journal.complete = False
    store.save(journal)
    marker = tmp_path / ".owner+0000:12:00.1+c1-net1"
    assert marker.exists() and marker.stat().st_size == 0
    store.save(record(cid="c2", pci="0000:12:00.2"))
    # other attachments' records unreadable as records: only the marked one is decoded
    (tmp_path / "c2-net1.json").write_text("not json")
    assert store.owner_of("0000:12:00.1") == journal
    assert store.owner_of("0000:12:00.3") is None
    # a marker that names an attachment whose files say another VF, and one with no files at all
    (tmp_path / ".owner+0000:12:00.3+c1-net1").touch()
    (tmp_path / ".owner+0000:12:00.4+gone-net1").touch()
    assert store.owner_of("0000:12:00.3") is None
    assert store.owner_of("0000:12:00.4") is None
    store.delete("c1", "net1", only_pending=True)  # an ADD undone: no record was committed
    assert not marker.exists() and store.owner_of("0000:12:00.1") is None
    (tmp_path / "c2-net1.json").unlink()
    store.delete("c2", "net1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".owner+0000:12:00.4+gone-net1"]


def test_records_without_a_marker_are_still_found(tmp_path: Path) -> None:
    """A record written before owner markers existed (an upgraded node) still holds its VF."""
    store = StateStore(str(tmp_path))
    store.save(record(cid="old", pci="0000:12:00.6"))
    store.save(record(cid="new", pci="0000:12:00.7"))
    (tmp_path / ".owner+0000:12:00.6+old-net1").unlink()
    assert store.owner_of("0000:12:00.6") == record(cid="old", pci="0000:12:00.6")
    assert store.owner_of("0000:12:00.7") == record(cid="new", pci="0000:12:00.7")
    # a committed record keeps its marker when only the journal goes
    journal = record(cid="new", pci="0000:12:00.7")
    journal.complete = False
    store.save(journal)
    store.delete("new", "net1", only_pending=True)
    assert (tmp_path / ".owner+0000:12:00.7+new-net1").exists()
    assert store.owner_of("0000:12:00.7") == record(cid="new", pci="0000:12:00.7")
