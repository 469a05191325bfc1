"""Restarts, pods going away (also while the controller is down), retries, watch expiry."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

import pytest

from sriovkit.hotplug.vhostuser import is_mounted
from sriovkit.kubesim.apiserver import PODS
from tests.support.hotplug_site import Site
from tests.support.ipam import ipam_allocations
from tests.support.kernel import ipv4_by_interface

pytestmark = pytest.mark.root


def test_restart_converges_without_touching_what_stays(site: Site):
    site.bridge_nad("br-a", "10.215.2.0/24")
    site.bridge_nad("br-b", "10.215.3.0/24")
    site.bridge_nad("br-c", "10.215.4.0/24")
    pod = site.pod("vm-2", "br-a,br-b")
    controller = site.controller()
    before = site.wait_status(pod, {"net1", "net2"})
    controller.stop()

    # while the controller is down: br-a goes, br-c comes; br-b stays (and keeps its name net2)
    site.set_networks(pod, "br-b,br-c")
    site.controller()
    after = site.wait_status(pod, {"net2", "net3"})
    assert after["net2"] == before["net2"]  # not re-plugged: same address
    assert after["net3"]["name"] == "ns1/br-c"
    assert set(ipv4_by_interface(site.netns(pod))) == {"lo", "eth0", "net2", "net3"}
    assert site.events("AddedInterface", pod)[-1].endswith("from ns1/br-c")
    assert site.events("RemovedInterface", pod) == ["Remove net1 from ns1/br-a"]
    assert sum("from ns1/br-b" in m for m in site.events("AddedInterface", pod)) == 1


def test_unfinished_add_is_undone_and_redone_after_a_restart(site: Site):
    site.bridge_nad("br-a", "10.215.5.0/24")
    pod = site.pod("vm-3", "br-a")
    controller = site.controller()
    site.wait_status(pod, {"net1"})
    controller.stop()
    # as if the controller died inside the ADD: the record says `adding`, network-status has nothing
    record_path = site.state_dir / "pods" / f"{pod['metadata']['uid']}.json"
    record = json.loads(record_path.read_text())
    record["attachments"][0]["state"] = "adding"
    record_path.write_text(json.dumps(record))
    current = site.kube.get(PODS, "ns1", "vm-3")
    current["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"] = "[]"
    site.kube.put(PODS, current)

    site.controller()
    status = site.wait_status(pod, {"net1"})
    assert ipv4_by_interface(site.netns(pod))["net1"] == status["net1"]["ips"]
    assert len(ipam_allocations(site.ipam_dir)) == 1  # the first address was given back


def test_deleted_pod_is_cleaned_up(site: Site):
    site.bridge_nad("br-a", "10.215.6.0/24")
    pod = site.pod("vm-4", "br-a", vhostuser=True)
    controller = site.controller()
    site.wait_status(pod, {"net1"})
    target = site.dirs.target(pod["metadata"]["uid"])
    assert is_mounted(target)

    site.kube.delete(PODS, "ns1", "vm-4")
    site.kube.wait_for(lambda _: not (site.state_dir / "pods" / f"{pod['metadata']['uid']}.json").exists())
    assert controller.wait_idle(10)
    assert ipam_allocations(site.ipam_dir) == []
    assert "net1" not in ipv4_by_interface(site.netns(pod))
    assert not is_mounted(target) and not target.parent.exists()


def test_pod_deleted_while_the_controller_was_down(site: Site):
    site.bridge_nad("br-a", "10.215.7.0/24")
    pod = site.pod("vm-5", "br-a", vhostuser=True)
    controller = site.controller()
    site.wait_status(pod, {"net1"})
    controller.stop()
    site.kube.delete(PODS, "ns1", "vm-5")
    site.remove_sandbox(pod)  # the kubelet tore the sandbox down meanwhile: its netns is gone

    site.controller()
    site.kube.wait_for(lambda _: not site.state_dir.joinpath("pods").exists()
                       or not list(site.state_dir.joinpath("pods").glob("*.json")))
    assert ipam_allocations(site.ipam_dir) == []  # DEL ran without a netns and released the address
    assert not is_mounted(site.dirs.target(pod["metadata"]["uid"]))


def test_vhostuser_sockets_seen_on_both_sides(site: Site):
    pod = site.pod("vm-6", vhostuser=True)
    site.controller()
    uid = pod["metadata"]["uid"]
    source, target = site.dirs.source(uid), site.dirs.target(uid)
    site.kube.wait_for(lambda _: site.events("VhostUserMounted", pod))  # sent once the mount is made
    assert site.events("VhostUserMounted", pod) == [f"{source} bind-mounted on {target}"]
    assert is_mounted(target)

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(target / "vhu-net1.sock"))  # OVS side makes the socket...
        server.listen()
        assert stat.S_ISSOCK(os.stat(source / "vhu-net1.sock").st_mode)  # ...the pod side sees it
        # the pod's side connects (through a dir fd: the kubelet's volume path is longer than sun_path)
        dir_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(f"/proc/self/fd/{dir_fd}/vhu-net1.sock")
            peer, _ = server.accept()
            client.sendall(b"ping")
            assert peer.recv(4) == b"ping"
            peer.close()
        finally:
            client.close()
            os.close(dir_fd)
    finally:
        server.close()
    (source / "from-pod").write_text("hello")
    assert (target / "from-pod").read_text() == "hello"
    kernel = subprocess.run(["findmnt", "-n", "-o", "TARGET", str(target)], capture_output=True, text=True).stdout
    assert kernel.strip() == str(target)

    site.kube.delete(PODS, "ns1", "vm-6")
    site.kube.wait_for(lambda _: not target.parent.exists())
    assert not is_mounted(target) and (source / "from-pod").exists()


def test_failed_add_is_retried_with_backoff_and_reported(site: Site):
    site.nad("late", {"cniVersion": "1.0.0", "name": "late", "type": "late-plugin"})
    pod = site.pod("vm-7", "late")
    site.controller()
    site.kube.wait_for(lambda _: len(site.events("HotplugFailed", pod)) >= 3)  # retried, not given up
    assert site.events("HotplugFailed", pod)[0] == (
        "ADD ns1/late@net1: CNI plugin 'late-plugin' not found in " + str(site.cni_bin))
    assert site.status(pod) == {}

    # the plugin is installed: the next retry (no change to the pod) succeeds
    (site.cni_bin / "late-plugin").write_text(
        '#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] && echo \'{"cniVersion": "1.0.0", "interfaces": '
        '[{"name": "net1", "mac": "02:00:00:00:00:07", "sandbox": "x"}], "ips": []}\'\nexit 0\n')
    (site.cni_bin / "late-plugin").chmod(0o755)
    status = site.wait_status(pod, {"net1"})
    assert status["net1"]["mac"] == "02:00:00:00:00:07"
    failures = len(site.events("HotplugFailed", pod))
    site.kube.wait_for(lambda _: site.events("AddedInterface", pod))
    assert len(site.events("HotplugFailed", pod)) == failures


def test_bad_annotation_is_one_warning_event(site: Site):
    pod = site.pod("vm-8", "[{")
    controller = site.controller()
    site.kube.wait_for(lambda _: site.events("InvalidNetworkAnnotation", pod))
    site.set_networks(pod, "[{ ")  # another bad value: reported again
    site.kube.wait_for(lambda _: len(site.events("InvalidNetworkAnnotation", pod)) == 2)
    controller._enqueue(pod["metadata"]["uid"])  # the same value again: not reported again
    assert controller.wait_idle(10)
    messages = site.events("InvalidNetworkAnnotation", pod)
    assert len(messages) == 2
    assert messages[0].startswith("pod ns1/vm-8: annotation k8s.v1.cni.cncf.io/networks: invalid JSON")


def test_watch_expiry_relists(site: Site):
    site.bridge_nad("br-a", "10.215.8.0/24")
    pod = site.pod("vm-9")
    site.controller()
    site.kube.wait_for(lambda k: k.open_watches[PODS])
    site.kube.compact()
    site.set_networks(pod, "br-a")  # the open watch ends with 410 first: seen through the list that follows
    site.wait_status(pod, {"net1"})
    assert site.kube.requests.count("GET /api/v1/pods") == 2  # the first list, and one after the 410


def test_new_sandbox_gets_its_networks_again(site: Site):
    site.bridge_nad("br-a", "10.215.11.0/24")
    pod = site.pod("vm-r", "br-a")
    site.controller()
    site.wait_status(pod, {"net1"})
    old_netns = site.netns(pod)
    # the runtime made the pod a new sandbox (the old one died with its netns); the kubelet updates the pod
    site.remove_sandbox(pod)
    site.sandboxes[pod["metadata"]["uid"]] = site.runtime.run_pod("vm-r", "ns1", pod["metadata"]["uid"])
    current = site.kube.get(PODS, "ns1", "vm-r")
    current["status"]["podIP"] = "10.213.0.99"
    site.kube.put(PODS, current)

    netns = site.netns(pod)
    assert netns != old_netns
    site.kube.wait_for(lambda _: "net1" in ipv4_by_interface(netns)
                       and site.status(pod).get("net1", {}).get("ips") == ipv4_by_interface(netns)["net1"])
    assert len(ipam_allocations(site.ipam_dir)) == 1  # the old sandbox's address was given back


def test_lost_network_status_is_written_again_without_replugging(site: Site):
    site.bridge_nad("br-a", "10.215.13.0/24")
    pod = site.pod("vm-s2", "br-a")
    controller = site.controller()
    before = site.wait_status(pod, {"net1"})
    controller.stop()
    # as if the controller died between the ADD and the patch
    current = site.kube.get(PODS, "ns1", "vm-s2")
    del current["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
    site.kube.put(PODS, current)

    site.controller()
    assert site.wait_status(pod, {"net1"}) == before
    assert len(site.events("AddedInterface", pod)) == 1
