"""The `sriov` CNI on a real VF the way operators deploy it: native shim -> `sriovctl agent` (issue 18).

The guest (guest/cniagent.sh) starts the agent with its CNI socket (its device plugin waits for a
kubelet that never comes), installs the native shim against that socket with no fallback, so every
answer is the agent's, and makes ADD then DEL of eth0's VF0 (vlan 100 qos 3, mac, spoofchk off,
trust on, max_tx_rate 100, host-local IPAM) as a runtime would, several times; the same cycles as
the standalone process (`python -m sriovkit.cni.plugin`), and through a second agent under the
profiler (guest/profile_agent.py). bench/vm_cni.py prints the wall times the guest recorded; these
tests assert only on what the guest's kernel reported and on each call's answer, never on times.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

pytestmark = pytest.mark.vmlab(guest="cniagent", nics=1)

PF = "eth0"
MAC = "02:00:00:00:a0:01"
POOL = ipaddress.ip_network("10.56.100.0/24")
PATHS = ("agent", "standalone", "unprofiled", "profiled", "nomodprobe")


def _vfinfo(step, index: int) -> dict[str, Any]:
    return step.vfinfo(PF, index)  # type: ignore[no-any-return]


def _vf(step, index: int) -> dict[str, Any]:
    return step.vf(PF, index)  # type: ignore[no-any-return]


def _calls(guest) -> list[tuple[str, str, int, int]]:
    """times.tsv: (path, command, iteration, rc) per timed call (the seconds are the bench's)."""
    rows = []
    for line in (guest.dir / "times.tsv").read_text().splitlines():
        path, command, iteration, _seconds, rc = line.split("\t")
        rows.append((path, command, int(iteration), int(rc)))
    return rows


def test_guest_script_completed(guest):
    assert guest.returncode == 0


def test_native_shim_installed_against_the_agent_with_no_fallback(guest):
    install = guest.step("start").command("install-cni")
    assert install.returncode == 0, install.stderr
    assert "(native shim," in install.stdout and "fallback none" in install.stdout, install.stdout


def test_agent_served_without_a_kubelet_and_stopped_cleanly(guest):
    log = (guest.dir / "agent.log").read_text()
    assert "cni socket listening" in log
    assert "waiting for" in log and "kubelet.sock" in log, "the device plugin waits; the CNI is served meanwhile"
    for name in ("agent", "profiled-agent"):
        assert (guest.dir / f"{name}.rc").read_text().strip() == "0", (guest.dir / f"{name}.log").read_text()


def test_add_through_the_agent_answers_net1_with_the_mac_and_a_host_local_ip(guest):
    add = guest.step("added").command("add")
    assert add.returncode == 0, f"{add.stdout}\n{add.stderr}"
    result = json.loads(add.stdout)
    assert [(i["name"], i["mac"], i["sandbox"]) for i in result["interfaces"]] == [("net1", MAC, "/run/netns/pod-a")]
    (ip,) = result["ips"]
    assert ipaddress.ip_interface(ip["address"]).ip in POOL
    assert "event=attached command=ADD container=ctr-agent-1" in (guest.dir / "agent.log").read_text(), \
        "the agent made this ADD (the shim has no fallback)"


def test_the_vf_is_in_the_pod_netns_with_its_mac_and_ip(guest):
    step = guest.step("added")
    ns = step.netns("pod-a")
    address = step.vf_addresses(PF)[0]
    assert set(ns.links) == {"lo", "net1"}
    assert ns.sysfs["net1"] == {"device": address, "address": MAC}, "the kernel says net1 is VF0"
    assert "UP" in ns.links["net1"]["flags"]
    ip = json.loads(step.command("add").stdout)["ips"][0]["address"]
    assert ip in ns.addresses["net1"]
    assert step.sysfs[address]["net"] == [], "gone from the host namespace"


def test_the_pf_shows_the_vfs_vlan_and_settings(guest):
    step, start = guest.step("added"), guest.step("start")
    vf = _vfinfo(step, 0)
    assert vf["address"] == MAC
    assert vf["vlan_list"] == [{"vlan": 100, "qos": 3}]
    assert vf["spoofchk"] is False and vf["trust"] is True
    assert vf["rate"] == {"max_tx": 100, "min_tx": 0}
    assert _vfinfo(step, 1) == _vfinfo(start, 1), "the other VF untouched"


def test_del_through_the_agent_gives_the_vf_back_as_before(guest):
    start, deleted = guest.step("start"), guest.step("deleted")
    assert deleted.command("del").returncode == 0, deleted.command("del").stdout
    assert _vfinfo(start, 0)["vlan_list"] == [{}], "precondition: no VLAN before ADD"
    assert _vfinfo(deleted, 0) == _vfinfo(start, 0), "vlan 0 and every PF-side setting as before"
    assert _vf(deleted, 0) == _vf(start, 0), "original name, MAC, MTU, state, driver"
    assert set(deleted.netns("pod-a").links) == {"lo"}
    ips = {name for name in deleted.lines("ipam-files.txt") if _in_pool(name)}
    assert ips == set(), "host-local's address released"


def _in_pool(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.rsplit("/", 1)[-1]) in POOL
    except ValueError:
        return False


def test_every_timed_call_succeeded_on_every_path(guest):
    calls = _calls(guest)
    failed = [c for c in calls if c[3] != 0]
    assert failed == [], [(c, (guest.dir / f"failed-{c[0]}-{c[1]}-{c[2]}.json").read_text()) for c in failed]
    for path in PATHS:
        adds = [c for c in calls if c[:2] == (path, "ADD")]
        dels = [c for c in calls if c[:2] == (path, "DEL")]
        assert adds and len(adds) == len(dels), f"{path}: every ADD had its DEL"
    assert [c for c in calls if c[0] == "version"], "VERSION was called"


def test_version_through_the_native_shim(guest):
    answer = json.loads((guest.dir / "version.json").read_text())
    assert "1.0.0" in answer["supportedVersions"]


def test_after_every_cycle_nothing_is_left(guest):
    start, end = guest.step("start"), guest.step("end")
    assert _vfinfo(end, 0) == _vfinfo(start, 0)
    assert _vf(end, 0) == _vf(start, 0)
    assert set(end.netns("pod-a").links) == {"lo"}
    assert end.lines("state-files.txt") == [], "no attachment record left"
    assert {name for name in end.lines("ipam-files.txt") if _in_pool(name)} == set()


def test_the_profiled_agent_wrote_its_profiles(guest):
    """bench/vm_cni.py reads these; the wrapper must have seen the calls the guest made."""
    calls = (guest.dir / "agent-calls.tsv").read_text().splitlines()
    assert any(line.split("\t")[3] == "1" for line in calls) and any(line.split("\t")[3] == "0" for line in calls)
    assert (guest.dir / "agent.prof").stat().st_size > 0 and (guest.dir / "agent-del.prof").stat().st_size > 0
