"""The agent SIGKILLed after every step of prepare and of unprepare (sriovkit.cni.faults, honoured on
a simulated host only): once restarted, the kubelet's retry of the same call ends as if nothing had
happened, with no VF left on the wrong driver, no file left behind and no claim left checkpointed."""

from __future__ import annotations

import json
import os
import subprocess

import grpc
import pytest

from sriovkit.cni.faults import ENV_KILL_AFTER
from sriovkit.host.discover import discover_device
from tests.support.dra_node import DRIVER, PF0_VF2, DraNode, vf_config

PREPARE_POINTS = ["dra journal", "dra bind", "dra device info", "dra cdi spec", "dra complete"]
UNPREPARE_POINTS = ["dra remove cdi spec", "dra remove device info", "dra restore driver"]


class Agent:
    def __init__(self, node: DraNode, kill_after: str | None = None) -> None:
        env = dict(os.environ)
        env.pop(ENV_KILL_AFTER, None)
        if kill_after:
            env[ENV_KILL_AFTER] = kill_after
        before = node.kubelet.dra_drivers.get(DRIVER)
        self.proc = subprocess.Popen(node.dra_agent_cmd(), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        assert node.kubelet.wait_for(lambda k: k.dra_drivers.get(DRIVER) not in (None, before), timeout=30)

    def killed(self) -> bool:
        return self.proc.wait(timeout=30) == -9

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.communicate(timeout=30)


def _nothing_left(node: DraNode) -> None:
    assert discover_device(node.sysfs, PF0_VF2).driver == "iavf"
    assert not list(node.cdi_dir.glob("*.json")) if node.cdi_dir.exists() else True
    assert not list(node.devinfo_dir.glob("intel.com-vfs-*")) if node.devinfo_dir.exists() else True
    assert json.loads((node.state_dir / "checkpoint.json").read_text())["claims"] == {}


@pytest.mark.parametrize("point", PREPARE_POINTS)
def test_killed_during_prepare_then_retried(dra_node, point):
    claim = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(driver="vfio-pci")])
    agent = Agent(dra_node, kill_after=point)
    try:
        with pytest.raises(grpc.RpcError):
            dra_node.kubelet.prepare_claims(DRIVER, [claim])
        assert agent.killed()
    finally:
        agent.stop()
    agent = Agent(dra_node)
    try:
        answer = dra_node.kubelet.prepare_claims(DRIVER, [claim])[claim[1]]  # the kubelet retries
        assert answer.error == "" and [d.device_name for d in answer.devices] == ["0000-11-00-2"]
        assert discover_device(dra_node.sysfs, PF0_VF2).driver == "vfio-pci"
        assert (dra_node.cdi_dir / f"sriovkit-dra-{claim[1]}.json").exists()
        assert dra_node.kubelet.unprepare_claims(DRIVER, [claim])[claim[1]].error == ""
        _nothing_left(dra_node)
    finally:
        agent.stop()


@pytest.mark.parametrize("point", [*PREPARE_POINTS[:-1]])
def test_killed_during_prepare_then_the_pod_is_gone(dra_node, point):
    claim = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(driver="vfio-pci")])
    agent = Agent(dra_node, kill_after=point)
    try:
        with pytest.raises(grpc.RpcError):
            dra_node.kubelet.prepare_claims(DRIVER, [claim])
        assert agent.killed()
    finally:
        agent.stop()
    agent = Agent(dra_node)
    try:
        assert dra_node.kubelet.unprepare_claims(DRIVER, [claim])[claim[1]].error == ""
        _nothing_left(dra_node)
    finally:
        agent.stop()


@pytest.mark.parametrize("point", UNPREPARE_POINTS)
def test_killed_during_unprepare_then_retried(dra_node, point):
    claim = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(driver="vfio-pci")])
    agent = Agent(dra_node, kill_after=point)
    try:
        assert dra_node.kubelet.prepare_claims(DRIVER, [claim])[claim[1]].error == ""
        with pytest.raises(grpc.RpcError):
            dra_node.kubelet.unprepare_claims(DRIVER, [claim])
        assert agent.killed()
    finally:
        agent.stop()
    agent = Agent(dra_node)
    try:
        assert dra_node.kubelet.unprepare_claims(DRIVER, [claim])[claim[1]].error == ""
        _nothing_left(dra_node)
    finally:
        agent.stop()
