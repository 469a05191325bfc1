"""The agent's policy loop on simulated hosts: provision, publish pools, withhold while changing,
refuse what would pull a VF from under a pod."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sriovkit.errors import InUseUnknown
from sriovkit.host.discover import discover
from sriovkit.provision.reconcile import PolicyReconciler, PolicySettings
from sriovkit.resources.config import load_config_file
from sriovkit.resources.pools import build_pools

PF = {"name": "ens1f0", "totalVfs": 8, "numVfs": 0, "vendor": "8086", "device": "10c9", "vfDevice": "10ca",
      "driver": "igb", "vfDriver": "igbvf"}
SPLIT = {"policies": [
    {"name": "dpdk", "resourceName": "dpdk", "nicSelector": {"pfNames": ["ens1f0#0-1"]}, "numVfs": 4,
     "deviceType": "vfio-pci"},
    {"name": "net", "resourceName": "net", "nicSelector": {"pfNames": ["ens1f0#2-3"]}, "numVfs": 4},
]}
TWO_NET = {"policies": [{"name": "net", "resourceName": "net", "nicSelector": {"pfNames": ["ens1f0"]},
                         "numVfs": 2}]}


class Loop:
    def __init__(self, node: Any, tmp: Path) -> None:
        self.node = node
        self.policy = tmp / "policy.yaml"
        self.pools_file = tmp / "run" / "pools.json"
        self.held: set[str] = set()
        self.seen_before_apply: list[dict[str, list[str]]] = []
        self.reconciler = PolicyReconciler(
            PolicySettings(policy_file=self.policy, pools_file=self.pools_file, sysfs=node.sysfs,
                           proc_root=str(node.proc)),
            in_use=lambda: self.held, provisioner=node.provisioner,
            before_apply=lambda: self.seen_before_apply.append(self.pools()))

    def write(self, policy: dict[str, Any]) -> None:
        self.policy.write_text(yaml.safe_dump(policy))

    def pools(self) -> dict[str, list[str]]:
        resources = load_config_file(self.pools_file)
        return build_pools(discover(self.node.sysfs), resources).as_ids()

    def vf(self, index: int) -> str:
        return self.node.host.vf_address(0, index)


@pytest.fixture
def loop(node, tmp_path: Path) -> Loop:
    return Loop(node(PF), tmp_path)


def test_provisions_then_publishes_the_pools_the_policy_defines(loop: Loop) -> None:
    loop.write(SPLIT)
    assert loop.reconciler.reconcile()
    assert loop.node.drivers() == ["vfio-pci", "vfio-pci", "igbvf", "igbvf"]
    assert loop.pools() == {"intel.com/dpdk": [loop.vf(0), loop.vf(1)], "intel.com/net": [loop.vf(2), loop.vf(3)]}
    assert loop.seen_before_apply == [{"intel.com/dpdk": [], "intel.com/net": []}], \
        "while VFs were created and rebound, both pools were registered but empty"


def test_a_second_pass_changes_nothing(loop: Loop) -> None:
    loop.write(SPLIT)
    loop.reconciler.reconcile()
    stamp = loop.pools_file.stat().st_mtime_ns
    assert loop.reconciler.reconcile()
    assert loop.seen_before_apply == [{"intel.com/dpdk": [], "intel.com/net": []}], "no second withdrawal"
    assert loop.pools_file.stat().st_mtime_ns == stamp


def test_a_changed_policy_withdraws_then_republishes(loop: Loop) -> None:
    loop.write(SPLIT)
    loop.reconciler.reconcile()
    loop.write(TWO_NET)
    assert loop.reconciler.reconcile()
    assert loop.node.drivers() == ["igbvf", "igbvf"]
    assert loop.seen_before_apply[-1] == {"intel.com/net": []}
    assert loop.pools() == {"intel.com/net": [loop.vf(0), loop.vf(1)]}


def test_a_vf_held_by_a_pod_blocks_the_change_and_keeps_the_pools(loop: Loop,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    loop.write(SPLIT)
    loop.reconciler.reconcile()
    before = loop.pools_file.read_text()
    loop.held = {loop.vf(3)}
    loop.write(TWO_NET)
    assert not loop.reconciler.reconcile()
    assert loop.node.drivers() == ["vfio-pci", "vfio-pci", "igbvf", "igbvf"], "nothing changed on the host"
    assert loop.pools_file.read_text() == before
    assert any("pods hold" in r.getMessage() and loop.vf(3) in r.getMessage() for r in caplog.records)


def test_unknown_holders_at_start_register_every_pool_empty_and_change_nothing(loop: Loop) -> None:
    def kubelet_silent() -> set[str]:
        raise InUseUnknown("podresources did not answer")

    loop.reconciler.in_use = kubelet_silent
    loop.write(SPLIT)
    assert not loop.reconciler.reconcile()
    assert loop.node.drivers() == []
    assert json.loads(loop.pools_file.read_text())["resourceList"] and loop.pools() == {
        "intel.com/dpdk": [], "intel.com/net": []}


def test_a_bug_in_finding_holders_is_not_taken_for_an_unanswered_kubelet(loop: Loop) -> None:
    def broken() -> set[str]:
        raise RuntimeError("a bug, not the kubelet")

    loop.reconciler.in_use = broken
    loop.write(SPLIT)
    with pytest.raises(RuntimeError, match="a bug"):
        loop.reconciler.reconcile()
    assert loop.node.drivers() == [], "nothing changed on the host"


def test_a_bad_policy_changes_nothing(loop: Loop, caplog: pytest.LogCaptureFixture) -> None:
    loop.write(SPLIT)
    loop.reconciler.reconcile()
    before = loop.pools_file.read_text()
    loop.policy.write_text("policies: [{name: x, numVfs: -1}]\n")
    assert not loop.reconciler.reconcile()
    assert loop.pools_file.read_text() == before
    assert any("numVfs" in r.getMessage() for r in caplog.records)


def test_the_watch_reconciles_when_the_file_changes(loop: Loop) -> None:
    loop.write(SPLIT)
    loop.reconciler.settings = dataclasses.replace(loop.reconciler.settings, poll_interval=0.05)
    loop.reconciler.start()
    try:
        loop.write(TWO_NET)
        deadline = time.monotonic() + 10
        want = {"intel.com/net": [loop.vf(0), loop.vf(1)]}
        # the VFs appear before the pools file is published again: wait for both
        while (loop.node.drivers() != ["igbvf", "igbvf"] or loop.pools() != want) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert loop.node.drivers() == ["igbvf", "igbvf"]
        assert loop.pools() == want
    finally:
        loop.reconciler.stop()


def test_a_policy_not_applied_is_a_readiness_problem_told_once(loop: Loop) -> None:
    told: list[str] = []
    loop.reconciler.on_failure = told.append
    loop.write(TWO_NET)
    assert loop.reconciler.reconcile() and loop.reconciler.readiness_problems() == []
    loop.write({"policies": [{"name": "net", "resourceName": "net", "nicSelector": {"pfNames": ["ens1f0"]},
                              "numVfs": "many"}]})
    assert not loop.reconciler.reconcile()
    (problem,) = loop.reconciler.readiness_problems()
    assert problem.startswith(f"policy {loop.policy}: not applied: ") and "numVfs" in problem
    assert not loop.reconciler.reconcile()  # the same problem again: not told again
    assert len(told) == 1 and "numVfs" in told[0]
    loop.held = {loop.vf(0)}  # a pod holds a VF the next policy would remove: refused, a new problem
    loop.write({"policies": [{"name": "net", "resourceName": "net", "nicSelector": {"pfNames": ["ens1f0"]},
                              "numVfs": 0}]})
    assert not loop.reconciler.reconcile()
    assert len(told) == 2 and loop.reconciler.readiness_problems()
    loop.held = set()
    loop.write(TWO_NET)
    assert loop.reconciler.reconcile() and loop.reconciler.readiness_problems() == []
