"""`sriovctl agent --policy`: one file drives both VF provisioning and the device plugin's pools,
watched while the agent runs, and a VF the kubelet assigned is never pulled from under its pod."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from sriovkit.host.discover import discover
from sriovkit.host.sysfs import Sysfs
from tests.support.device_plugins import DevicePluginNode, DevicePluginNodeFactory
from tests.support.waiting import wait_for

PF = {"name": "ens1f0", "totalVfs": 8, "numVfs": 0, "vendor": "8086", "device": "10c9", "vfDevice": "10ca",
      "driver": "igb", "vfDriver": "igbvf"}


def policy(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"policies": list(rules)}


def rule(name: str, pf: str, num_vfs: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "resourceName": name, "nicSelector": {"pfNames": [pf]}, "numVfs": num_vfs, **extra}


class Site:
    """The kubelet-node rig (its config.json unused: the agent reads the policy) and the agent."""

    def __init__(self, node: DevicePluginNode) -> None:
        self.root, self.host, self.kubelet = node.root, node.host, node.kubelet
        (self.root / "host/sys/bus/pci/drivers/vfio-pci").mkdir(parents=True, exist_ok=True)
        self.policy = self.root / "policy.yaml"
        self.proc: subprocess.Popen[str] | None = None

    def write(self, data: dict[str, Any]) -> None:
        tmp = self.policy.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data))
        tmp.replace(self.policy)

    def start_agent(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sriovkit", "agent", "--policy", str(self.policy),
             "--policy-pools-file", str(self.root / "run" / "pools.json"), "--host-root", str(self.root / "host"),
             "--device-plugin-dir", str(self.root / "dp"), "--devinfo-dir", str(self.root / "devinfo"),
             "--pod-resources-socket", str(self.root / "pod-resources.sock"), "--cni-socket", "",
             "--cni-state-dir", str(self.root / "cni-state"), "--metrics-address", ""],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop_agent(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err

    def drivers(self) -> list[str | None]:
        snapshot = discover(Sysfs(self.root / "host"))
        pf = snapshot.get(self.host.pf_address(0))
        assert pf is not None
        return [vf.driver for vf in snapshot.virtual_functions(pf)]

    def vf(self, index: int) -> str:
        return self.host.vf_address(0, index)


@pytest.fixture
def site(make_dp_node: DevicePluginNodeFactory) -> Iterator[Site]:
    s = Site(make_dp_node([PF], pod_resources="pod-resources.sock", prefix="pa", watch_interval=0.1))
    try:
        yield s
    finally:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def ids(site: Site, resource: str) -> list[str]:
    return sorted(site.kubelet.resources().get(resource, {}))


def test_one_policy_file_drives_vfs_and_pools(site: Site) -> None:
    site.write(policy(rule("dpdk", "ens1f0#0-1", 4, deviceType="vfio-pci"), rule("net", "ens1f0#2-3", 4)))
    site.start_agent()
    site.kubelet.wait_for_devices("intel.com/dpdk", 2, timeout=20)
    site.kubelet.wait_for_devices("intel.com/net", 2, timeout=20)
    assert site.drivers() == ["vfio-pci", "vfio-pci", "igbvf", "igbvf"]
    assert ids(site, "intel.com/dpdk") == [site.vf(0), site.vf(1)]
    assert ids(site, "intel.com/net") == [site.vf(2), site.vf(3)]

    site.write(policy(rule("net", "ens1f0", 2)))  # the agent sees the change and converges
    wait_for("intel.com/net on VFs 0 and 1", lambda: ids(site, "intel.com/net") == [site.vf(0), site.vf(1)],
             timeout=15)
    assert site.drivers() == ["igbvf", "igbvf"]
    # a pool the policy no longer names stops being served: the kubelet marks its devices unhealthy
    wait_for("intel.com/dpdk unhealthy", timeout=15,
             check=lambda: not any(d.healthy for d in site.kubelet.resources().get("intel.com/dpdk", {}).values()))
    site.stop_agent()


def test_a_vf_the_kubelet_assigned_is_never_removed(site: Site) -> None:
    site.write(policy(rule("net", "ens1f0", 4)))
    site.start_agent()
    site.kubelet.wait_for_devices("intel.com/net", 4, timeout=20)
    held = site.kubelet.allocate("pod", "app", {"intel.com/net": 1})
    assert held
    site.write(policy(rule("net", "ens1f0", 2)))
    time.sleep(2.5)  # more than the agent's policy poll: it has seen the change by now
    assert site.drivers() == ["igbvf"] * 4, "the VF count stayed: a pod holds one of them"
    assert len(ids(site, "intel.com/net")) == 4
    err = site.stop_agent()
    assert "pods hold" in err and "nothing changed" in err
