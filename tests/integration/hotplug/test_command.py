"""`sriovctl hotplug` as a process, and networks Multus attached when the pod started."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from sriovkit.hotplug import cniexec
from sriovkit.hotplug.cniexec import CniCall, CniRuntime
from sriovkit.hotplug.nad import parse_nad
from sriovkit.hotplug.status import status_entry
from sriovkit.kubesim.apiserver import PODS
from tests.support.hotplug_site import NODE, STATUS, Site
from tests.support.ipam import ipam_allocations
from tests.support.kernel import ipv4_by_interface

pytestmark = pytest.mark.root


def test_sriovctl_hotplug_serves_until_sigterm(site: Site):
    site.bridge_nad("br-a", "10.215.9.0/24")
    pod = site.pod("vm-c", "br-a")
    kubeconfig = site.kube.write_kubeconfig(site.tmp / "kubeconfig")
    cmd = [sys.executable, "-m", "sriovkit", "hotplug", "--kubeconfig", str(kubeconfig), "--node-name", NODE,
           "--cri-socket", str(site.runtime.socket), "--cni-bin-dir", str(site.cni_bin), "--pod-resources-socket", "",
           "--state-dir", str(site.state_dir), "--kubelet-root", str(site.dirs.kubelet_root),
           "--ovs-run-dir", str(site.dirs.ovs_run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        status = site.wait_status(pod, {"net1"})
        assert ipv4_by_interface(site.netns(pod))["net1"] == status["net1"]["ips"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "added ADD ns1/br-a@net1" in err


def test_network_multus_attached_at_start_is_kept_then_removed(site: Site):
    nad = site.bridge_nad("br-m", "10.215.10.0/24")
    pod = site.pod("vm-m", "br-m")
    netns = site.netns(pod)
    sandbox = site.sandboxes[pod["metadata"]["uid"]]
    # what Multus does when the sandbox is made: ADD, then network-status with the default network first
    definition = parse_nad(nad)
    config = cniexec.network_config(definition.plugins, cni_version=definition.cni_version,
                                    name=definition.network_name, device_id=None, runtime_config={})
    call = CniCall(sandbox, netns, "net1", "ns1", "vm-m", pod["metadata"]["uid"])
    result = cniexec.add(CniRuntime((str(site.cni_bin),)), config, call)
    current = site.kube.get(PODS, "ns1", "vm-m")
    current["metadata"]["annotations"][STATUS] = json.dumps(
        [{"name": "cbr0", "interface": "eth0", "default": True}, status_entry("ns1/br-m", "net1", result)])
    site.kube.put(PODS, current)

    controller = site.controller()
    controller._enqueue(pod["metadata"]["uid"])
    assert controller.wait_idle(10)
    assert site.events("AddedInterface", pod) == []  # already there: not added twice
    assert len(ipam_allocations(site.ipam_dir)) == 1

    site.set_networks(pod, "")
    status = site.wait_status(pod, {"eth0"})
    assert status["eth0"]["default"] is True
    assert "net1" not in ipv4_by_interface(netns)
    assert ipam_allocations(site.ipam_dir) == []
