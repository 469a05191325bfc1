"""Attachments whose DEL never came (issue: the agent restarted during a pod's DEL, Multus dropped
its cache): the agent asks a real containerd over CRI which sandboxes exist and releases, with
DEL's steps, only those whose sandbox is gone and whose netns is gone."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sriovkit.agent.forgotten import ForgottenAttachments
from sriovkit.hotplug.cri import CriClient
from tests.cnirt.runtime import Containerd
from tests.support.cni_host import Node, NodeFactory
from tests.support.ipam import ipam_allocations
from tests.support.names import NetnsFactory, random_id, unique_name
from tests.support.waiting import wait_for

pytestmark = pytest.mark.root


def _answers(runtime: Containerd) -> bool:
    try:
        runtime.version()
    except grpc.RpcError:
        return False
    return True


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    """The tests' containerd (tests/cnirt); stopped afterwards only if this module started it."""
    runtime = Containerd()
    was_up = runtime.socket.exists() and _answers(runtime)
    runtime.up()
    yield runtime
    if not was_up:
        runtime.down()


def _pod(runtime: Containerd) -> tuple[str, str, dict[str, str]]:
    """A sandbox made over CRI as the kubelet makes it: (sandbox ID, its netns, CNI_ARGS env)."""
    name, namespace, uid = unique_name("fg", 6), "ns-forgotten", str(uuid.uuid4())
    sandbox_id = runtime.run_pod(name, namespace, uid)
    found = CriClient(str(runtime.socket)).sandbox(uid, namespace, name)
    assert found is not None and found.netns, "the runtime gave the sandbox a network namespace"
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID={uid}"
    return sandbox_id, found.netns, {"CNI_CONTAINERID": sandbox_id, "CNI_ARGS": args}


def _wait_revived(node: Node, pci: str) -> None:
    """The kernel returns a real VF to the host when its netns goes; a veth stand-in is recreated."""
    wait_for(f"the interface of {pci} to go away with its namespace",
             lambda: node.network.revive(pci) or node.ctx.netlink.device_netdev(pci), timeout=10, interval=0.025)


def test_vf_of_a_removed_sandbox_returns_to_the_pool(containerd: Containerd, node_factory: NodeFactory,
                                                     netns: NetnsFactory, tmp_path: Path) -> None:
    node = node_factory()
    live_id, live_netns, live_env = _pod(containerd)
    gone_id, gone_netns, gone_env = _pod(containerd)
    adding = netns()  # a netns whose sandbox the runtime does not list yet: an ADD in progress
    adding_id = random_id()
    try:
        ipam = node.host_local("10.93.0.0/24")
        for index, (pod, env) in enumerate([(live_netns, live_env), (gone_netns, gone_env),
                                            (adding, {"CNI_CONTAINERID": adding_id})]):
            result, code = node.run("ADD", node.conf(index, vlan=40 + index, ipam=ipam), pod, **env)
            assert code == 0, result
        assert len(ipam_allocations(node.ipam_dir)) == 3

        # the sandbox stops without our DEL (Multus answered StopPodSandbox from an empty cache)
        containerd.stop_pod(gone_id)
        _wait_revived(node, node.vf(1))
        assert node.ctx.netlink.vf_settings(node.pf, 1).vlan == 41, "nothing gave it back yet"
        sweeper = ForgottenAttachments(node.ctx, CriClient(str(containerd.socket)).sandbox_ids, period_s=0.2)
        assert sweeper.sweep() == [], "a sandbox the runtime still lists (NOTREADY) may still get its DEL"

        containerd.remove_pod(gone_id)  # now the runtime has forgotten it
        unreachable = ForgottenAttachments(node.ctx, CriClient(str(tmp_path / "no-runtime.sock")).sandbox_ids,
                                           period_s=60)
        assert unreachable.sweep() == [], "a runtime that cannot be asked releases nothing"
        assert {r.container_id for r in node.ctx.store.records()} == {live_id, gone_id, adding_id}

        sweeper.start()
        try:
            deadline = time.monotonic() + 60
            while sweeper.released < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # a few more passes: the others must stay
        finally:
            sweeper.stop()
        assert sweeper.released == 1
        assert {r.container_id for r in node.ctx.store.records()} == {live_id, adding_id}
        assert node.ctx.netlink.device_netdev(node.vf(1)) == node.vf_netdev(1), "back under its own name"
        assert node.ctx.netlink.vf_settings(node.pf, 1).vlan == 0, "the PF-side VLAN restored"
        assert len(ipam_allocations(node.ipam_dir)) == 2, "its address released through host-local's DEL"
        assert node.ctx.netlink.vf_settings(node.pf, 0).vlan == 40, "the live pod keeps its VF"
        assert node.ctx.netlink.device_netdev(node.vf(0)) != node.vf_netdev(0), "still inside the live pod"
    finally:
        for pod, env, index in [(live_netns, live_env, 0), (adding, {"CNI_CONTAINERID": adding_id}, 2)]:
            node.run("DEL", node.conf(index, ipam=node.host_local("10.93.0.0/24")), pod, **env)
        for sandbox in (live_id, gone_id):
            with contextlib.suppress(grpc.RpcError):  # already removed by the test
                containerd.remove_pod(sandbox)
