"""A pod with NET_ADMIN against DEL, CHECK and GC (issue 13 class 1): it renames its VF, names
links of its own like it, deletes and recreates interfaces, hides the VF in another namespace.
DEL must take back the VF, found by what the kernel says it is (here: the veth's host-side
peer, the simulated host's stand-in for the PCI parent device), never move a link of the pod's
own to the host, and never answer success for a VF it has not verified back."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import pytest

from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import Node
from tests.support.ipam import ipam_allocations
from tests.support.kernel import ip, ip_json, pod_link
from tests.support.names import NetnsFactory, unique_name

pytestmark = pytest.mark.root


def host_links() -> dict[str, str]:
    """name -> MAC of every interface in the host namespace."""
    return {x["ifname"]: x.get("address", "") for x in ip_json("link", "show")}


def decoy(pod: str, name: str, peer: str = "podside") -> str:
    """A veth pair the pod makes itself; returns the MAC of the end named `name`."""
    ip("link", "add", name, "type", "veth", "peer", "name", peer, netns=pod)
    link = pod_link(pod, name)
    assert link is not None
    return str(link["address"])


def add(node: Node, pod: str, index: int = 0, **extra: Any) -> dict[str, Any]:
    conf = node.conf(index, vlan=300 + index, mac=f"02:aa:00:00:00:0{index}", ipam=node.host_local(), **extra)
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    return conf


def assert_host_gained_only_the_vf(node: Node, before: dict[str, str], index: int, foreign_macs: set[str]) -> None:
    """Other tests on this machine make interfaces too: judged by MAC and by the names the pod used."""
    after = host_links()
    assert node.vf_netdev(index) in set(after) - set(before), "the VF is not back in the host"
    assert not foreign_macs & set(after.values()), "a pod's own interface reached the host namespace"
    assert "podside" not in after


@pytest.mark.parametrize(("vf_name", "decoy_name"), [
    ("realvf", "net1"),          # the attack: the VF renamed, a veth of the pod's own named like it
    ("realvf", None),            # a rename alone
    ("HOST", "net1"),            # the VF under its own host name, the decoy under the pod-side one
    ("net1x", "HOST"),           # the decoy under the VF's host name
    ("OTHER", "net1"),           # the VF under another VF's host name
    ("eth0", "net2"),
])
def test_del_takes_back_the_renamed_vf_and_leaves_the_pods_own_links(
        node: Node, netns: NetnsFactory, vf_name: str, decoy_name: str | None) -> None:
    pod = netns()
    conf = add(node, pod)
    names = {"HOST": node.vf_netdev(0), "OTHER": node.vf_netdev(1)}
    vf_name = names.get(vf_name, vf_name)
    ip("link", "set", "net1", "down", netns=pod)
    ip("link", "set", "net1", "name", vf_name, netns=pod)
    foreign = set()
    if decoy_name is not None:
        foreign = {decoy(pod, names.get(decoy_name, decoy_name))}
    before = host_links()

    out, code = node.run("DEL", conf, pod)
    assert (out, code) == (None, 0)
    assert pod_link(pod, vf_name) is None, "the VF stayed in the pod"
    if decoy_name is not None:
        assert pod_link(pod, names.get(decoy_name, decoy_name)) is not None, "the pod's own link was taken"
        assert pod_link(pod, "podside") is not None
    assert_host_gained_only_the_vf(node, before, 0, foreign)
    assert node.ctx.store.records(pending=True) == []
    # the fixture then checks the VF as before ADD: host name, MAC, MTU, PF-side settings, IPAM


def test_the_vf_deleted_in_the_pod_and_a_link_made_in_its_place(node: Node, netns: NetnsFactory) -> None:
    """A veth dies when deleted (a real VF cannot be); the simulated host brings it back to the host
    namespace as the kernel brings back a VF whose namespace died. The pod's new net1 stays."""
    pod = netns()
    conf = add(node, pod)
    ip("link", "del", "net1", netns=pod)
    foreign = {decoy(pod, "net1")}
    before = host_links()
    assert node.run("DEL", conf, pod) == (None, 0)
    assert pod_link(pod, "net1") is not None
    assert_host_gained_only_the_vf(node, before, 0, foreign)


def test_a_vf_hidden_in_another_namespace_keeps_the_attachment_and_del_says_try_again(
        node: Node, netns: NetnsFactory) -> None:
    pod, hideout = netns(), netns()
    conf = add(node, pod)
    record = node.ctx.store.load("c1", "net1")
    leases = ipam_allocations(node.ipam_dir)
    ip("link", "set", "net1", "netns", os.path.basename(hideout), "name", "stash", netns=pod)
    foreign = {decoy(pod, "net1")}
    before = host_links()

    for _ in range(2):  # as often as the runtime retries: nothing moves, nothing is forgotten
        out, code = node.run("DEL", conf, pod)
        assert code == 1 and out["code"] == ErrorCode.TRY_AGAIN, out
        assert node.pf and node.ctx.store.load("c1", "net1") == record
        assert ipam_allocations(node.ipam_dir) == leases
        assert node.ctx.netlink.vf_settings(node.pf, 0).vlan == 300
        now = host_links()
        assert node.vf_netdev(0) not in now and not foreign & set(now.values())
        assert pod_link(hideout, "stash") is not None and pod_link(pod, "net1") is not None

    ip("link", "set", "stash", "netns", os.path.basename(pod), "name", "back", netns=hideout)
    assert node.run("DEL", conf, pod) == (None, 0)
    assert pod_link(pod, "back") is None and pod_link(pod, "net1") is not None
    assert_host_gained_only_the_vf(node, before, 0, foreign)


def test_check_reports_the_renamed_vf_and_never_checks_the_decoy(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(2, version="1.0.0", ipam=node.host_local())
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    check = {**conf, "prevResult": result}
    assert node.run("CHECK", check, pod) == (None, 0)
    ip("link", "set", "net1", "down", netns=pod)
    ip("link", "set", "net1", "name", "realvf", netns=pod)
    decoy(pod, "net1")
    out, code = node.run("CHECK", check, pod)
    assert code == 1 and out["code"] == ErrorCode.CHECK_FAILED
    assert "named realvf in the pod" in out["details"], out
    hideout = netns()
    ip("link", "set", "realvf", "netns", os.path.basename(hideout), netns=pod)
    out, code = node.run("CHECK", check, pod)
    assert code == 1 and out["code"] == ErrorCode.CHECK_FAILED and "missing" in out["details"], out
    assert "net1 there is another interface" in out["details"]
    # DEL cannot finish while the VF is hidden; the hideout's deletion brings it back (asynchronously)
    out, code = node.run("DEL", conf, pod)
    assert code == 1 and out["code"] == ErrorCode.TRY_AGAIN
    subprocess.run(["ip", "netns", "delete", os.path.basename(hideout)], check=True)
    for _ in range(200):
        out, code = node.run("DEL", conf, pod)
        if code == 0:
            break
        assert out["code"] == ErrorCode.TRY_AGAIN, out
        time.sleep(0.05)
    assert code == 0 and pod_link(pod, "net1") is not None


def test_gc_releases_a_renamed_vf_and_leaves_the_decoy(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(3, version="1.1.0", vlan=33)
    assert node.run("ADD", conf, pod, CNI_CONTAINERID="gone")[1] == 0
    ip("link", "set", "net1", "down", netns=pod)
    ip("link", "set", "net1", "name", "realvf", netns=pod)
    foreign = {decoy(pod, "net1")}
    before = host_links()
    gc = {"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov", "cni.dev/valid-attachments": []}
    assert run_cni({"CNI_COMMAND": "GC", "CNI_PATH": "/usr/lib/cni"}, json.dumps(gc).encode(), node.ctx) == (b"", 0)
    assert pod_link(pod, "net1") is not None and pod_link(pod, "realvf") is None
    assert_host_gained_only_the_vf(node, before, 3, foreign)


def test_a_vf_renamed_then_its_pod_namespace_deleted_comes_back(node: Node, netns: NetnsFactory) -> None:
    from tests.support.cni_host import delete_netns_and_revive

    pod = netns()
    conf = add(node, pod, index=1)
    ip("link", "set", "net1", "down", netns=pod)
    ip("link", "set", "net1", "name", unique_name("r", 6), netns=pod)
    delete_netns_and_revive(node, pod, node.vf(1))
    assert node.run("DEL", conf, pod) == (None, 0)


def test_del_after_an_add_killed_while_writing_its_journal_leaves_no_temp_file(node: Node, netns: NetnsFactory) -> None:
    """Killed between creating the journal's temp file and renaming it: nothing was changed yet,
    so DEL has nothing to undo, and it removes the temp file."""
    pod = netns()
    node.state_dir.mkdir(mode=0o700, exist_ok=True)
    tmp = node.state_dir / f".tmp-c1-net1+{node.vf(0)}.pending"
    tmp.write_text('{"half": ')
    assert node.run("DEL", node.conf(0), pod) == (None, 0)
    assert not tmp.exists()
