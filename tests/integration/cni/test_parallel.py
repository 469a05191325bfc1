"""Concurrency: ADDs on VFs of one PF in parallel; two pods racing for one VF."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import NodeFactory
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


def test_parallel_adds_and_dels_on_vfs_of_one_pf(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    node = node_factory(num_vfs=6)
    pods = [netns() for _ in range(6)]
    confs = [node.conf(i, vlan=100 + i, spoofchk="off", ipam=node.host_local()) for i in range(6)]

    def add(i: int) -> tuple[object, int]:
        return node.run("ADD", confs[i], pods[i], CNI_CONTAINERID=f"pod{i}")

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(add, range(6)))
    assert [code for _, code in results] == [0] * 6, results
    addresses = {r["ips"][0]["address"] for r, _ in results}  # type: ignore[index]
    assert len(addresses) == 6
    assert [node.ctx.netlink.vf_settings(node.pf, i).vlan for i in range(6)] == [100 + i for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        dels = list(pool.map(lambda i: node.run("DEL", confs[i], pods[i], CNI_CONTAINERID=f"pod{i}"), range(6)))
    assert dels == [(None, 0)] * 6


def test_two_pods_racing_for_one_vf_exactly_one_wins(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    node = node_factory()
    pods = [netns() for _ in range(4)]
    conf = node.conf(1, vlan=42, ipam=node.host_local())
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: node.run("ADD", conf, pods[i], CNI_CONTAINERID=f"pod{i}"), range(4)))
    winners = [i for i, (_, code) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    for i, (out, _code) in enumerate(results):
        if i != winners[0]:
            assert out["code"] == ErrorCode.DEVICE_UNUSABLE and "already attached" in out["msg"]
            assert pod_link(pods[i], "net1") is None
    assert node.ctx.netlink.vf_settings(node.pf, 1).vlan == 42  # the losers did not undo the winner's settings
    w = winners[0]
    assert node.run("DEL", conf, pods[w], CNI_CONTAINERID=f"pod{w}") == (None, 0)


def test_lock_is_shared_between_processes(node_factory: NodeFactory, netns: NetnsFactory) -> None:
    """A standalone plugin process waits for the VF lock the agent holds, and times out cleanly."""
    node = node_factory()
    pod = netns()
    conf = node.conf(0)
    env = {**node.env("ADD", pod), "SRIOVKIT_HOST_ROOT": str(node.host.root),
           "SRIOVKIT_CNI_STATE_DIR": str(node.state_dir), "SRIOVKIT_CNI_LOCK_TIMEOUT": "0.3", "PATH": "/usr/bin:/bin"}
    with node.ctx.store.lock(node.vf(0), 5):
        proc = subprocess.run([sys.executable, "-m", "sriovkit.cni.plugin"], input=json.dumps(conf).encode(),
                              env=env, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == ErrorCode.TRY_AGAIN
    assert pod_link(pod, "net1") is None
