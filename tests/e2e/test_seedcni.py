"""The seeds' CNI mode on the VM lab's real igb PF (issue 19): netconfs that name only the PF.

The guest (guest/seed.sh) calls the in-process plugin through the shim on eth0's two igbvf VFs:
two containers in a row get VF 0 and VF 1, a third is refused, each has its per-namespace record
while attached; then `l2enable` with the `dpdk` block binds vfio-pci and DEL gives igbvf back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.vmlab(guest="seed", nics=1)
PF = "eth0"


def _driver(step, index: int) -> str:
    return step.sysfs[step.vf_addresses(PF)[index]]["driver"]  # type: ignore[no-any-return]


def _ok(command) -> dict[str, Any]:
    assert command.returncode == 0, f"CNI call failed: {command.stdout}\n{command.stderr}"
    return json.loads(command.stdout) if command.stdout.strip() else {}  # type: ignore[no-any-return]


def test_guest_script_completed(guest):
    assert guest.returncode == 0


def test_two_containers_get_the_two_vfs_in_index_order_and_a_third_is_refused(guest):
    step, start = guest.step("added"), guest.step("start")
    vfs = start.vf_addresses(PF)
    for i in (1, 2):
        _ok(step.command(f"add-{i}"))
        saved = step.command(f"file-{i}").json()
        assert (saved["pciAddress"], saved["vfIndex"], saved["pfName"]) == (vfs[i - 1], i - 1, PF)
        assert saved["netns"] == f"/run/netns/pod-{i}" and saved["ips"]
        assert "net1" in step.netns(f"pod-{i}").links
    refused = step.command("add-3")
    assert refused.returncode != 0
    error = json.loads(refused.stdout)
    assert error["code"] == 100 and error["msg"] == f"PF {PF}: all 2 VFs are attached", error


def test_del_gives_both_vfs_back_and_removes_the_records(guest):
    step, start = guest.step("deleted"), guest.step("start")
    for name in ("del-1", "del-2", "del-3"):
        _ok(step.command(name))
    for index in (0, 1):
        assert _driver(step, index) == "igbvf"
        assert step.sysfs[step.vf_addresses(PF)[index]]["net"] == start.sysfs[start.vf_addresses(PF)[index]]["net"]
    assert [line for line in step.lines("files.txt") if line.startswith("./pod-")] == []


def test_dpdk_block_binds_vfio_pci_and_del_restores_igbvf(guest):
    added, deleted = guest.step("dpdk-added"), guest.step("dpdk-deleted")
    result = _ok(added.command("add"))
    assert "ips" not in result
    assert _driver(added, 0) == "vfio-pci"
    saved = added.command("file").json()
    assert (saved["driver"], saved["mode"]) == ("vfio-pci", "userspace")
    _ok(deleted.command("del"))
    assert _driver(deleted, 0) == "igbvf"
    assert [line for line in deleted.lines("files.txt") if line.startswith("./pod-")] == []
