"""The controller against containerd's real sandboxes, real CNI plugins and the fake API."""

from __future__ import annotations

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
