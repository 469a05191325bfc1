"""The `sriov` CNI plugin on real VFs (issue 6 scenarios 3, 4, 5 (CNI part) and 6).

The guest (guest/cni.sh) installs the shim with no agent reachable (so it runs the plugin
in-process) and calls it as a runtime would, with host-local IPAM, on eth0's four igbvf VFs:

  3. VF0 -> pod-a, VF1 -> pod-b with vlan 100 qos 3, mac, spoofchk off, trust on, max_tx_rate 100;
     the pods ping each other through the NIC's switch; CHECK pod-a, and again after its VLAN was
     changed behind the plugin's back; DEL both.
     3b: VF2 -> pod-m with only a MAC (no trust: igb lets an untrusted VF keep only the PF's MAC).
  4. VF2 with link_state, then with min_tx_rate (igb refuses both), each after settings it accepts.
  6. VF0 -> pod-g, the namespace deleted, then DEL.
     6b: VF1 -> pod-h, the namespace deleted while a process still holds it, DEL at once.
  5. VF3 bound to vfio-pci, ADD in userspace mode (vlan 400); VF2 ADD with driver vfio-pci (vlan 500);
     DEL both.

Every assertion is on what the guest's kernel reported: the PF's vfinfo_list, sysfs, `ip` inside
each namespace (see data/cni-*.json for the configs).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest

pytestmark = pytest.mark.vmlab(guest="cni", nics=1)

PF = "eth0"
POD_MAC = {"pod-a": "02:00:00:00:a0:01", "pod-b": "02:00:00:00:b0:01"}
NETNS_GONE_MAC = "02:00:00:00:d0:01"
SCENARIO3_POOL = ipaddress.ip_network("10.56.100.0/24")
SCENARIO6_POOL = ipaddress.ip_network("10.56.101.0/24")
VFIO, IGBVF = "vfio-pci", "igbvf"


def _vfinfo(step, index: int) -> dict[str, Any]:
    return step.vfinfo(PF, index)  # type: ignore[no-any-return]


def _vf(step, index: int) -> dict[str, Any]:
    return step.vf(PF, index)  # type: ignore[no-any-return]


def _error(command) -> dict[str, Any]:
    assert command.returncode != 0, f"expected a CNI error, got success: {command.stdout}"
    return json.loads(command.stdout)  # type: ignore[no-any-return]


def _result(command) -> dict[str, Any]:
    assert command.returncode == 0, f"CNI call failed: {command.stdout}\n{command.stderr}"
    return json.loads(command.stdout)  # type: ignore[no-any-return]


def _ips(files: list[str], pool: ipaddress.IPv4Network) -> set[str]:
    """host-local's allocations (one file per address, named by it) inside `pool`."""
    out = set()
    for name in files:
        try:
            ip = ipaddress.ip_address(name.rsplit("/", 1)[-1])
        except ValueError:
            continue
        if ip in pool:
            out.add(str(ip))
    return out


def test_guest_script_completed(guest):
    assert guest.returncode == 0


def test_shim_installed_and_vfs_start_clean(guest):
    step = guest.step("start")
    assert step.command("install-cni").returncode == 0
    for index in range(4):
        vf = _vfinfo(step, index)
        assert vf["vlan_list"] == [{}] and vf["trust"] is False and vf["spoofchk"] is True
        assert _vf(step, index)["driver"] == IGBVF


# --- scenario 3 ------------------------------------------------------------------------------

def test_add_answers_net1_with_its_mac_and_a_host_local_ip(guest):
    step = guest.step("added")
    for name, pod in (("add-a", "pod-a"), ("add-b", "pod-b")):
        result = _result(step.command(name))
        assert [(i["name"], i["mac"], i["sandbox"]) for i in result["interfaces"]] == [
            ("net1", POD_MAC[pod], f"/run/netns/{pod}")]
        (ip,) = result["ips"]
        assert ipaddress.ip_interface(ip["address"]).ip in SCENARIO3_POOL


def test_pf_shows_the_requested_vf_settings(guest):
    step, start = guest.step("added"), guest.step("start")
    for index, pod in ((0, "pod-a"), (1, "pod-b")):
        vf = _vfinfo(step, index)
        assert vf["address"] == POD_MAC[pod], "the PF-side (admin) MAC"
        assert vf["vlan_list"] == [{"vlan": 100, "qos": 3}]
        assert vf["spoofchk"] is False and vf["trust"] is True
        assert vf["rate"] == {"max_tx": 100, "min_tx": 0}
        assert vf["link_state"] == _vfinfo(start, index)["link_state"], "not asked for: unchanged"
    for index in (2, 3):
        assert _vfinfo(step, index) == _vfinfo(start, index), "other VFs untouched"


def test_pod_sees_the_vf_as_net1_with_the_mac_and_the_ip(guest):
    step = guest.step("added")
    for index, name, pod in ((0, "add-a", "pod-a"), (1, "add-b", "pod-b")):
        ns = step.netns(pod)
        address = step.vf_addresses(PF)[index]
        assert set(ns.links) == {"lo", "net1"}, "the VF is the pod's only way out: pings cross the NIC"
        assert ns.sysfs["net1"] == {"device": address, "address": POD_MAC[pod]}
        assert "UP" in ns.links["net1"]["flags"]
        ip = _result(step.command(name))["ips"][0]["address"]
        assert ip in ns.addresses["net1"]
        assert step.sysfs[address]["net"] == [], "gone from the host namespace"


def test_two_pods_on_two_vfs_ping_each_other_through_the_nic(guest):
    step = guest.step("added")
    for name in ("ping-a-b", "ping-b-a"):
        ping = step.command(name)
        assert ping.returncode == 0, f"{name}: {ping.stdout}{ping.stderr}"
        received = re.search(r"(\d+) (?:packets )?received", ping.stdout)
        assert received and int(received.group(1)) > 0, ping.stdout


def test_the_nic_keeps_pods_on_different_vlans_apart(guest):
    """After pod-a's VF moved to VLAN 101 (the drift below), pod-b on VLAN 100 is out of its reach:
    the VLANs the plugin set are enforced by the NIC, not just displayed."""
    step = guest.step("added")
    assert step.command("ping-a-b").returncode == 0, "precondition: the pods reached each other on VLAN 100"
    ping = step.command("ping-isolated")
    assert ping.returncode != 0, ping.stdout
    assert re.search(r"\b0 (?:packets )?received", ping.stdout), ping.stdout


def test_check_passes_on_the_attachment_as_added(guest):
    check = guest.step("added").command("check")
    assert check.returncode == 0, f"CHECK read the real NIC's VF settings differently: {check.stdout}"
    assert check.stdout.strip() == ""


def test_check_reports_the_vlan_changed_behind_its_back(guest):
    assert guest.step("added").command("check").returncode == 0, "precondition: CHECK passed before"
    error = _error(guest.step("added").command("check-drifted"))
    assert isinstance(error["code"], int) and error["code"] > 0
    assert re.search(r"vlan\b.*\b101\b", error.get("details", "")), error


def test_del_gives_the_vf_back_exactly_as_before(guest):
    start, added, deleted = guest.step("start"), guest.step("added"), guest.step("deleted")
    assert [_vf(added, i)["netdevs"] for i in (0, 1)] == [[], []], "precondition: ADD moved both VFs"
    for name in ("del-a", "del-b"):
        assert deleted.command(name).returncode == 0, deleted.command(name).stdout
    for index in (0, 1):
        assert _vfinfo(deleted, index) == _vfinfo(start, index), "vlan 0 and every PF-side setting as before"
        assert _vf(deleted, index) == _vf(start, index), "original name, MAC, MTU, state, driver"
    for pod in ("pod-a", "pod-b"):
        assert set(deleted.netns(pod).links) == {"lo"}


def test_del_releases_the_host_local_addresses(guest):
    added, deleted = guest.step("added"), guest.step("deleted")
    assert len(_ips(added.lines("ipam-files.txt"), SCENARIO3_POOL)) == 2
    assert _ips(deleted.lines("ipam-files.txt"), SCENARIO3_POOL) == set()


# --- scenario 3b: a MAC without `trust` -------------------------------------------------------

MAC_ONLY = "02:00:00:00:e0:01"


def test_mac_without_trust_puts_the_vf_in_the_pod_with_that_mac(guest):
    step = guest.step("mac-added")
    result = _result(step.command("add"))
    assert result["interfaces"][0]["mac"] == MAC_ONLY
    vf = _vfinfo(step, 2)
    assert (vf["address"], vf["trust"]) == (MAC_ONLY, False), "admin MAC set, trust left as it was"
    assert step.netns("pod-m").sysfs["net1"] == {"device": step.vf_addresses(PF)[2], "address": MAC_ONLY}


def test_mac_without_trust_del_gives_the_vf_back_as_before(guest):
    before, deleted = guest.step("deleted"), guest.step("mac-deleted")
    assert guest.step("mac-added").command("add").returncode == 0, "precondition: ADD succeeded"
    assert deleted.command("del").returncode == 0, deleted.command("del").stdout
    assert _vfinfo(deleted, 2) == _vfinfo(before, 2)
    assert _vf(deleted, 2) == _vf(before, 2)


# --- scenario 4 ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "setting", "refusal"), [
    ("add-link-state", "link_state", r"EOPNOTSUPP|ENOTSUP|not supported"),
    ("add-min-rate", "min_tx_rate", r"EINVAL|Invalid argument"),
])
def test_refused_setting_is_a_cni_error_naming_it(guest, name, setting, refusal):
    command = guest.step("refused").command(name)
    error = _error(command)
    assert command.returncode == 1
    assert set(error) >= {"cniVersion", "code", "msg"}
    assert isinstance(error["code"], int) and error["code"] > 0
    assert setting in error["msg"], error
    assert re.search(refusal, error.get("details", "")), f"the kernel's refusal is passed on: {error}"
    assert len(command.stdout.strip().splitlines()) == 1, "one JSON document, no traceback"


def test_refused_add_leaves_every_vf_as_it_was(guest):
    before, after = guest.step("mac-deleted"), guest.step("refused")  # nothing ran in between but the ADDs
    for name, setting in (("add-link-state", "link_state"), ("add-min-rate", "min_tx_rate")):
        msg = _error(after.command(name))["msg"]
        assert setting in msg, f"precondition: {name} got as far as {setting} (vlan, mac... applied first): {msg}"
    for index in range(4):
        assert _vfinfo(after, index) == _vfinfo(before, index), f"VF {index}: the settings applied first were undone"
        assert _vf(after, index) == _vf(before, index), f"VF {index}: still in the host under its name"
    assert set(after.netns("pod-c").links) == {"lo"}


# --- scenario 6 ------------------------------------------------------------------------------

def test_deleting_the_pod_netns_returns_the_vf_to_the_host(guest):
    added, gone = guest.step("gone-added"), guest.step("gone-netns")
    assert _result(added.command("add"))["interfaces"][0]["name"] == "net1"
    assert added.sysfs[added.vf_addresses(PF)[0]]["net"] == []
    vf = _vf(gone, 0)
    assert len(vf["netdevs"]) == 1, "the kernel moved the physical VF back to the host namespace"
    assert _vfinfo(gone, 0)["vlan_list"] == [{"vlan": 600}], "the PF still holds the pod's settings"


def test_del_with_the_netns_gone_restores_name_mac_and_vlan(guest):
    before, deleted = guest.step("refused"), guest.step("gone-deleted")  # "refused": the VF before ADD
    assert guest.step("gone-added").command("add").returncode == 0, "precondition: ADD succeeded"
    command = deleted.command("del")
    assert command.returncode == 0, command.stdout
    assert _vfinfo(deleted, 0) == _vfinfo(before, 0), "vlan 0, admin MAC and trust as before"
    assert _vf(deleted, 0) == _vf(before, 0), "original name and MAC on the host"


def test_del_with_the_netns_gone_releases_the_ip(guest):
    added, deleted = guest.step("gone-added"), guest.step("gone-deleted")
    assert len(_ips(added.lines("ipam-files.txt"), SCENARIO6_POOL)) == 1
    assert _ips(deleted.lines("ipam-files.txt"), SCENARIO6_POOL) == set()


def test_del_waits_for_a_vf_still_held_in_a_dying_netns(guest):
    """DEL arrives while the kernel still holds the VF in a namespace the runtime already deleted."""
    before, deleted = guest.step("gone-deleted"), guest.step("held-deleted")  # VF1 untouched since scenario 3
    assert guest.step("held-added").command("add").returncode == 0, "precondition: ADD succeeded"
    assert deleted.lines("host-netdevs-at-del.txt") == [], "precondition: the VF was not back when DEL started"
    command = deleted.command("del")
    assert command.returncode == 0, command.stdout
    assert _vfinfo(deleted, 1) == _vfinfo(before, 1)
    assert _vf(deleted, 1) == _vf(before, 1), "original name and MAC once the kernel gave the VF back"


# --- scenario 5 (CNI part) -------------------------------------------------------------------

def test_userspace_vf_gets_its_vlan_and_nothing_moves(guest):
    before, added = guest.step("dpdk-before"), guest.step("dpdk-added")
    result = _result(added.command("add-userspace"))
    assert [i["name"] for i in result["interfaces"]] == ["net1"]
    vf = _vf(added, 3)
    assert (vf["driver"], vf["netdevs"]) == (VFIO, [])
    assert added.sysfs[vf["address"]]["iommu_group"] in added.vfio_nodes
    assert _vfinfo(added, 3)["vlan_list"] == [{"vlan": 400}]
    assert set(added.netns("pod-u").links) == {"lo"}, "no interface moved into the pod"
    assert _vf(before, 3) == vf


def test_requested_driver_is_bound_at_add(guest):
    added = guest.step("dpdk-added")
    _result(added.command("add-rebind"))
    vf = _vf(added, 2)
    assert (vf["driver"], vf["netdevs"]) == (VFIO, [])
    assert added.sysfs[vf["address"]]["iommu_group"] in added.vfio_nodes, "/dev/vfio/<group> appeared"
    assert _vfinfo(added, 2)["vlan_list"] == [{"vlan": 500}]
    assert set(added.netns("pod-r").links) == {"lo"}


def test_userspace_del_restores_vlan_and_original_driver(guest):
    before, deleted = guest.step("dpdk-before"), guest.step("dpdk-deleted")
    for name in ("add-userspace", "add-rebind"):
        assert guest.step("dpdk-added").command(name).returncode == 0, f"precondition: {name} succeeded"
    for name in ("del-userspace", "del-rebind"):
        assert deleted.command(name).returncode == 0, deleted.command(name).stdout
    for index in (2, 3):
        assert _vfinfo(deleted, index) == _vfinfo(before, index)
    assert _vf(deleted, 3) == _vf(before, 3), "still on vfio-pci, as before ADD"
    vf, was = _vf(deleted, 2), _vf(before, 2)
    assert vf["driver"] == IGBVF
    assert (vf["netdevs"], vf["mac"], vf["mtu"], vf["up"]) == (was["netdevs"], was["mac"], was["mtu"], was["up"]), \
        "its interface is back with the name and MAC it had"


def test_rebind_del_leaves_no_driver_override_behind(guest):
    """The VF's driver_override as before ADD: no driver pinned for the next user of the VF."""
    before, deleted = guest.step("dpdk-before"), guest.step("dpdk-deleted")
    assert guest.step("dpdk-added").command("add-rebind").returncode == 0, "precondition: ADD succeeded"
    assert _vf(deleted, 2)["override"] == _vf(before, 2)["override"]
