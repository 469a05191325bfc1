"""The controller against containerd's real sandboxes, real CNI plugins and the fake API."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.integration.hotplug.conftest import Site, ipam_allocations, links

pytestmark = pytest.mark.root


def test_add_remove_and_add_again(site: Site):
    site.bridge_nad("br-a", "10.215.1.0/24")
    pod = site.pod("vm-1")
    site.controller()
    netns = site.netns(pod)

    site.set_networks(pod, "br-a")
    status = site.wait_status(pod, {"net1"})
    assert status["net1"]["name"] == "ns1/br-a"
    assert links(netns)["net1"] == status["net1"]["ips"]
    assert status["net1"]["ips"][0].startswith("10.215.1.")
    assert site.events("AddedInterface", pod) == [f"Add net1 [{status['net1']['ips'][0]}] from ns1/br-a"]

    site.set_networks(pod, "")
    site.wait_status(pod, set())
    assert "net1" not in links(netns)
    assert ipam_allocations(site.ipam_dir) == []
    assert site.events("RemovedInterface", pod) == ["Remove net1 from ns1/br-a"]

    site.set_networks(pod, "br-a@hp0")
    status = site.wait_status(pod, {"hp0"})
    assert links(netns)["hp0"] == status["hp0"]["ips"]
    assert "eth0" in links(netns)  # the pod's own network untouched throughout


def test_json_selection_with_mac_and_ips(site: Site):
    site.bridge_nad("br-j", "10.215.12.0/24", capabilities={"mac": True, "ips": True})
    pod = site.pod("vm-j", '[{"name": "br-j", "interface": "hp1", "mac": "02:42:ac:11:00:99", '
                           '"ips": ["10.215.12.50/24"]}]')
    site.controller()
    status = site.wait_status(pod, {"hp1"})
    assert (status["hp1"]["mac"], status["hp1"]["ips"]) == ("02:42:ac:11:00:99", ["10.215.12.50"])
    assert links(site.netns(pod))["hp1"] == ["10.215.12.50"]
    link = subprocess.run(["ip", "-j", "-n", os.path.basename(site.netns(pod)), "link", "show", "hp1"],
                          capture_output=True, text=True, check=True).stdout
    assert json.loads(link)[0]["address"] == "02:42:ac:11:00:99"
