"""`sriovctl agent --hotplug`: the hot-plug controller as a component of the node agent process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sriovkit.hotplug.vhostuser import is_mounted
from sriovkit.kubesim import Kubelet
from sriovkit.kubesim.apiserver import rbac_verb
from sriovkit.sim import host as sim
from tests.support.hotplug_site import NODE, Site
from tests.support.kernel import ipv4_by_interface

pytestmark = pytest.mark.root

AGENT_NEEDS = Path(__file__).resolve().parents[3] / "deploy" / "agent-needs.yaml"


def _agent_command(site: Site, kubelet_dir: Path) -> list[str]:
    sim.create(site.tmp / "host", {"pfs": [{"name": "enp1s0f0", "numVfs": 1}]})
    (site.tmp / "config.json").write_text(json.dumps({"resourceList": [
        {"resourceName": "net", "selectors": {"drivers": ["iavf"]}}]}))
    kubeconfig = site.kube.write_kubeconfig(site.tmp / "kubeconfig")
    return [sys.executable, "-m", "sriovkit", "agent", "--config-file", str(site.tmp / "config.json"),
            "--host-root", str(site.tmp / "host"), "--device-plugin-dir", str(kubelet_dir),
            "--devinfo-dir", str(site.tmp / "devinfo"), "--cni-socket", "", "--metrics-address", "",
            "--pod-resources-socket", "",
            "--hotplug", "--kubeconfig", str(kubeconfig), "--node-name", NODE,
            "--cri-socket", str(site.runtime.socket), "--cni-bin-dir", str(site.cni_bin),
            "--hotplug-state-dir", str(site.state_dir), "--kubelet-root", str(site.dirs.kubelet_root),
            "--ovs-run-dir", str(site.dirs.ovs_run_dir), "--hotplug-resync-seconds", "5"]


def test_agent_with_hotplug_adds_a_network_and_mounts_vhostuser_dir(site: Site):
    kubelet = Kubelet(site.short / "dp")
    kubelet.start()
    site.bridge_nad("br-g", "10.215.14.0/24")
    pod = site.pod("vm-g", vhostuser=True)
    proc = subprocess.Popen(_agent_command(site, site.short / "dp"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        kubelet.wait_for_devices("intel.com/net", 1, timeout=20)  # the device plugin runs beside it
        site.set_networks(pod, "br-g@hp1")
        status = site.wait_status(pod, {"hp1"})
        assert ipv4_by_interface(site.netns(pod))["hp1"] == status["hp1"]["ips"]
        assert is_mounted(site.dirs.target(pod["metadata"]["uid"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        kubelet.stop()
    assert proc.returncode == 0, err
    assert "components=DevicePluginManager,NodeEvents,HotplugController" in err
    assert "added ADD ns1/br-g@hp1" in err
    # the RBAC the deployment grants (agent-needs.yaml, hotplug.rbac) covers every call the agent made
    granted = {(group, resource, verb) for rule in yaml.safe_load(AGENT_NEEDS.read_text())["hotplug"]["rbac"]
               for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    used = {rbac_verb(request) for request in site.kube.requests}
    assert used <= granted, f"calls RBAC does not allow: {sorted(used - granted)}"
    assert {("", "pods", "list"), ("", "pods", "patch"), ("", "events", "create")} <= used
