"""The controller against containerd's real sandboxes, real CNI plugins and the fake API."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from sriovkit import logs
from tests.support.hotplug_site import Site
from tests.support.ipam import ipam_allocations
from tests.support.kernel import ip_json, ipv4_by_interface

pytestmark = pytest.mark.root


def test_add_remove_and_add_again(site: Site):
    site.bridge_nad("br-a", "10.215.1.0/24")
    pod = site.pod("vm-1")
    site.controller()
    netns = site.netns(pod)

    site.set_networks(pod, "br-a")
    status = site.wait_status(pod, {"net1"})
    assert status["net1"]["name"] == "ns1/br-a"
    assert ipv4_by_interface(netns)["net1"] == status["net1"]["ips"]
    assert status["net1"]["ips"][0].startswith("10.215.1.")
    assert site.events("AddedInterface", pod) == [f"Add net1 [{status['net1']['ips'][0]}] from ns1/br-a"]

    site.set_networks(pod, "")
    site.wait_status(pod, set())
    assert "net1" not in ipv4_by_interface(netns)
    assert ipam_allocations(site.ipam_dir) == []
    assert site.events("RemovedInterface", pod) == ["Remove net1 from ns1/br-a"]

    site.set_networks(pod, "br-a@hp0")
    status = site.wait_status(pod, {"hp0"})
    assert ipv4_by_interface(netns)["hp0"] == status["hp0"]["ips"]
    assert "eth0" in ipv4_by_interface(netns)  # the pod's own network untouched throughout


def test_json_selection_with_mac_and_ips(site: Site):
    site.bridge_nad("br-j", "10.215.12.0/24", capabilities={"mac": True, "ips": True})
    pod = site.pod("vm-j", '[{"name": "br-j", "interface": "hp1", "mac": "02:42:ac:11:00:99", '
                           '"ips": ["10.215.12.50/24"]}]')
    site.controller()
    status = site.wait_status(pod, {"hp1"})
    assert (status["hp1"]["mac"], status["hp1"]["ips"]) == ("02:42:ac:11:00:99", ["10.215.12.50"])
    assert ipv4_by_interface(site.netns(pod))["hp1"] == ["10.215.12.50"]
    assert ip_json("link", "show", "hp1", netns=site.netns(pod))[0]["address"] == "02:42:ac:11:00:99"


@contextlib.contextmanager
def json_log(name: str) -> Iterator[io.StringIO]:
    """Lines of logger `name` as the agent's --log-format json writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_name_the_pod_and_the_network(site: Site):
    site.bridge_nad("br-a", "10.215.4.0/24")
    pod = site.pod("vm-log")
    with json_log("sriovkit.hotplug") as stream:
        site.controller()
        site.set_networks(pod, "br-a")
        site.wait_status(pod, {"net1"})
        site.set_networks(pod, "br-a,no-such-nad")
        deadline = time.monotonic() + 30
        while not any("no-such-nad" in r["msg"] and r["level"] == "warning" for r in _records(stream)):
            assert time.monotonic() < deadline, _records(stream)
            time.sleep(0.1)
    records = _records(stream)
    uid = pod["metadata"]["uid"]
    (added,) = [r for r in records if r["msg"].startswith("pod ns1/vm-log: added")]
    assert (added["pod"], added["pod_uid"], added["network"], added["interface"]) == ("ns1/vm-log", uid,
                                                                                      "ns1/br-a", "net1")
    failed = [r for r in records if r["level"] == "warning" and "no-such-nad" in r["msg"]]
    assert failed and all(r["pod"] == "ns1/vm-log" and r["pod_uid"] == uid for r in failed)
    site.set_networks(pod, "")
    site.wait_status(pod, set())
