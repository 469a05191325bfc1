"""The checkpoint of prepared claims survives a new instance (an agent restart) and never tears."""

from __future__ import annotations

import json

from sriovkit.dra.checkpoint import Checkpoint


def test_records_survive_a_new_instance_and_delete(tmp_path):
    first = Checkpoint(tmp_path)
    first.put("u1", {"complete": True, "devices": [{"pci": "0000:11:00.0"}]})
    first.put("u2", {"complete": False, "devices": [{"pci": "0000:11:00.1"}]})
    again = Checkpoint(tmp_path)
    assert again.get("u1") == {"complete": True, "devices": [{"pci": "0000:11:00.0"}]}
    assert again.holders("0000:11:00.1") == ["u2"]
    again.delete("u1")
    assert set(Checkpoint(tmp_path).claims()) == {"u2"}
    assert json.loads((tmp_path / "checkpoint.json").read_text())["version"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_returned_record_is_a_copy(tmp_path):
    ckpt = Checkpoint(tmp_path)
    record = {"devices": [{"pci": "a"}]}
    ckpt.put("u", record)
    record["devices"].append({"pci": "b"})
    ckpt.get("u")["devices"].clear()
    assert ckpt.get("u") == {"devices": [{"pci": "a"}]}


def test_unknown_version_or_garbage_reads_as_empty(tmp_path):
    (tmp_path / "checkpoint.json").write_text(json.dumps({"version": 99, "claims": {"u": {}}}))
    assert Checkpoint(tmp_path).claims() == {}
    (tmp_path / "checkpoint.json").write_text("[]")
    assert Checkpoint(tmp_path).claims() == {}


def test_vfs_of_prepared_claims_are_in_use_for_provisioning(tmp_path):
    from sriovkit.agent.in_use import devices_in_use

    Checkpoint(tmp_path / "dra").put("u1", {"complete": True, "devices": [{"pci": "0000:11:00.2"}]})
    Checkpoint(tmp_path / "dra").put("u2", {"complete": False, "devices": [{"pci": "0000:13:00.0"}]})
    cni_state = str(tmp_path / "cni")
    assert devices_in_use(None, cni_state) == set()
    assert devices_in_use(None, cni_state, dra_state_dir=tmp_path / "dra") == {"0000:11:00.2", "0000:13:00.0"}
