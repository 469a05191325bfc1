"""Issue 13 class 1 on a real igb VF: a pod with NET_ADMIN renames its VF and puts a veth of its
own under the VF's name, or hides the VF in another namespace, then the runtime's DEL.

The guest (guest/attack.sh) drives the shim (in-process plugin) on eth0's two igbvf VFs:

  pod-x: net1 renamed realvf, a veth pair net1 + podside made in its place, DEL.
  pod-y: net1 moved into the namespace `hideout` as stash, a veth net1 made in its place, DEL
         (the VF is in neither the pod nor the host: "try again", nothing undone), then the VF
         moved back into pod-y as `back` and DEL again.

The kernel is the judge: sysfs (which PCI function each host netdev is, the pods' own sysfs),
`ip -d -j link show` and the PF's vfinfo_list.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.vmlab(guest="attack", nics=1)

PF = "eth0"


def _vfinfo(step: Any, index: int) -> dict[str, Any]:
    (entry,) = [vf for vf in step.links[PF]["vfinfo_list"] if vf["vf"] == index]
    return entry  # type: ignore[no-any-return]


def _host_vf(step: Any, index: int) -> tuple[list[str], str | None]:
    """VF `index`'s netdevs in the host namespace (sysfs) and the MAC of the first."""
    raw = step.sysfs[step.vf_addresses(PF)[index]]
    netdevs = raw["net"]
    return netdevs, step.links[netdevs[0]]["address"] if netdevs else None


def test_guest_script_completed(guest):
    assert guest.returncode == 0


def test_the_attack_is_in_place_before_del(guest):
    added, attacked = guest.step("added"), guest.step("attacked")
    assert added.command("add-x").returncode == 0 and added.command("add-y").returncode == 0
    vf0, vf1 = attacked.vf_addresses(PF)[:2]
    pod_x = attacked.netns("pod-x").sysfs
    assert pod_x["realvf"]["device"] == vf0, "the VF is in the pod under the name the pod gave it"
    assert pod_x["net1"]["device"] is None and "podside" in pod_x, "net1 is now the pod's own veth"
    assert attacked.netns("hideout").sysfs["stash"]["device"] == vf1
    assert attacked.netns("pod-y").sysfs["net1"]["device"] is None


def test_del_takes_back_the_renamed_vf_and_not_the_pods_veth(guest):
    start, attacked, deleted = guest.step("start"), guest.step("attacked"), guest.step("deleted")
    assert deleted.command("del-x").returncode == 0, deleted.command("del-x").stdout
    assert _host_vf(deleted, 0) == _host_vf(start, 0), "VF0 back under its host name with its MAC"
    assert _vfinfo(deleted, 0) == _vfinfo(start, 0), "vlan, admin MAC, trust as before ADD"
    decoy_mac = attacked.netns("pod-x").sysfs["net1"]["address"]
    assert "podside" not in deleted.links and decoy_mac not in {x["address"] for x in deleted.links.values()}
    pod_x = deleted.netns("pod-x").sysfs
    assert "realvf" not in pod_x and pod_x["net1"]["device"] is None and "podside" in pod_x


def test_a_hidden_vf_makes_del_say_try_again_and_keep_everything(guest):
    added, deleted = guest.step("added"), guest.step("deleted")
    command = deleted.command("del-y")
    assert command.returncode != 0
    assert json.loads(command.stdout)["code"] == 11, command.stdout
    assert "ctr-y-net1.json" in deleted.lines("state-files.txt"), "the record is kept"
    assert _vfinfo(deleted, 1) == _vfinfo(added, 1), "the pod's VLAN and MAC stay on the PF until the VF is back"
    assert deleted.netns("hideout").sysfs["stash"]["device"] == deleted.vf_addresses(PF)[1]
    assert "net1" in deleted.netns("pod-y").sysfs, "the pod's own net1 stays"
    assert _host_vf(deleted, 1)[0] == []


def test_once_back_in_the_pod_under_any_name_del_restores_it(guest):
    start, returned = guest.step("start"), guest.step("returned")
    assert returned.command("del-y-again").returncode == 0, returned.command("del-y-again").stdout
    assert _host_vf(returned, 1) == _host_vf(start, 1)
    assert _vfinfo(returned, 1) == _vfinfo(start, 1)
    assert returned.lines("state-files.txt") == []
    pod_y = returned.netns("pod-y").sysfs
    assert "back" not in pod_y and pod_y["net1"]["device"] is None
