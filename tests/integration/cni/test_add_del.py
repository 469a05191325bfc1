"""ADD and DEL through run_cni on veth-backed VFs, with the real host-local and static IPAM."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sriovkit.cni.spec import SUPPORTED_VERSIONS
from sriovkit.netlink.model import LinkState, VlanProto
from tests.support.cni_host import Node, delete_netns_and_revive
from tests.support.ipam import ipam_allocations
from tests.support.kernel import pod_addresses, pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


def test_every_config_field_is_applied_then_restored(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    pod = netns()
    log_file = tmp_path / "sriov.log"
    devinfo = tmp_path / "devinfo" / "pod-net.json"
    conf = node.conf(1, vlan=100, vlanQoS=3, vlanProto="802.1ad", mac="02:12:34:56:78:9a", spoofchk="off",
                     trust="on", link_state="enable", min_tx_rate=10, max_tx_rate=200, mtu=1400,
                     logLevel="debug", logFile=str(log_file),
                     ipam=node.host_local(routes=[{"dst": "10.88.0.0/16"}], gateway="10.77.0.1"),
                     runtimeConfig={"CNIDeviceInfoFile": str(devinfo)})
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    settings = node.ctx.netlink.vf_settings(node.pf, 1)
    assert (settings.vlan, settings.qos, settings.vlan_proto) == (100, 3, VlanProto.DOT1AD)
    assert (settings.mac, settings.spoofchk, settings.trust) == ("02:12:34:56:78:9a", False, True)
    assert (settings.link_state, settings.min_tx_rate, settings.max_tx_rate) == (LinkState.ENABLE, 10, 200)
    link = pod_link(pod, "net1")
    assert link is not None and link["address"] == "02:12:34:56:78:9a" and link["mtu"] == 1400
    assert "UP" in link["flags"]
    assert pod_addresses(pod, "net1") == {result["ips"][0]["address"]}
    routes = subprocess.run(["ip", "-n", os.path.basename(pod), "route"], capture_output=True, text=True).stdout
    assert "10.88.0.0/16 via 10.77.0.1 dev net1" in routes
    assert node.ctx.netlink.device_netdev(node.vf(1)) is None  # left the host
    pci = {"pci-address": node.vf(1), "pf-pci-address": node.host.pf_address(0)}
    assert json.loads(devinfo.read_text()) == {"type": "pci", "version": "1.1.0", "pci": pci}
    lines = log_file.read_text().splitlines()
    assert lines and all("container=c1" in ln and "ifname=net1" in ln and f"pci={node.vf(1)}" in ln for ln in lines)
    assert any(f"pci={node.vf(1)}" in ln and "event=attached" in ln for ln in lines)

    out, code = node.run("DEL", conf, pod)
    assert (out, code) == (None, 0)
    assert not devinfo.exists()
    assert pod_link(pod, "net1") is None
    # the fixture checks the rest: name, MAC, MTU, every PF-side setting, state, locks, IPAM


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_result_in_every_version_with_static_ipam(node: Node, netns: NetnsFactory, version: str) -> None:
    pod = netns()
    ipam = {"type": "static", "addresses": [{"address": "10.99.0.7/24", "gateway": "10.99.0.1"},
                                            {"address": "fd00:99::7/64"}],
            "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.99.0.53"]}}
    conf = node.conf(0, version=version, mac="02:00:00:00:99:07", mtu=1450, ipam=ipam)
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert result["cniVersion"] == version
    iface = {"name": "net1", "mac": "02:00:00:00:99:07", "sandbox": pod}
    if version == "1.1.0":
        iface |= {"mtu": 1450, "pciID": node.vf(0)}
    assert result["interfaces"] == [iface]
    ips = [{"interface": 0, "address": "10.99.0.7/24", "gateway": "10.99.0.1"},
           {"interface": 0, "address": "fd00:99::7/64"}]
    if version < "1.0.0":
        ips = [{"version": v, **ip} for v, ip in zip(("4", "6"), ips, strict=True)]
    assert result["ips"] == ips
    assert result["routes"] == [{"dst": "0.0.0.0/0"}]
    assert result["dns"] == {"nameservers": ["10.99.0.53"]}
    assert pod_addresses(pod, "net1") == {"10.99.0.7/24", "fd00:99::7/64"}
    assert node.run("DEL", conf, pod)[1] == 0


def test_mac_from_runtime_config_beats_cni_args_and_config(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(2, mac="02:00:00:00:00:01", runtimeConfig={"mac": "02:00:00:00:00:03"})
    result, code = node.run("ADD", conf, pod, CNI_ARGS="IgnoreUnknown=1;MAC=02:00:00:00:00:02")
    assert code == 0, result
    assert result["interfaces"][0]["mac"] == "02:00:00:00:00:03"
    assert pod_link(pod, "net1")["address"] == "02:00:00:00:00:03"  # type: ignore[index]
    assert node.run("DEL", conf, pod)[1] == 0


def test_without_ipam_or_settings_only_moves_and_reports_the_vf_mac(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    original_mac = node.view(3).link.mac  # type: ignore[union-attr]
    result, code = node.run("ADD", node.conf(3), pod, CNI_IFNAME="eth5")
    assert code == 0, result
    assert result["interfaces"] == [{"name": "eth5", "mac": original_mac, "sandbox": pod}]
    assert "ips" not in result
    assert node.ctx.netlink.vf_settings(node.pf, 3) == node.view(3).settings
    assert node.run("DEL", node.conf(3), pod, CNI_IFNAME="eth5")[1] == 0


def test_del_is_idempotent_and_survives_containerds_extra_dels(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(0, vlan=5, ipam=node.host_local())
    assert node.run("DEL", conf, pod) == (None, 0)  # nothing attached yet
    assert node.run("ADD", conf, pod)[1] == 0
    assert len(ipam_allocations(node.ipam_dir)) == 1
    assert node.run("DEL", conf, pod) == (None, 0)
    assert node.run("DEL", conf, pod) == (None, 0)
    assert node.run("DEL", conf, "") == (None, 0)  # later DELs come without a netns
    assert node.run("DEL", {k: v for k, v in conf.items() if k != "deviceID"}, "") == (None, 0)


def test_del_after_the_pod_netns_was_deleted(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(1, vlan=7, trust="on", mac="02:00:00:00:01:01", mtu=1300, ipam=node.host_local())
    assert node.run("ADD", conf, pod)[1] == 0
    # a real VF returns to the host namespace under its pod-side name; the veth stand-in is recreated so
    assert delete_netns_and_revive(node, pod, node.vf(1)) == ["net1"]
    out, code = node.run("DEL", conf, pod)
    assert (out, code) == (None, 0), out
    assert node.ctx.netlink.device_netdev(node.vf(1)) == node.vf_netdev(1)


def test_del_with_empty_netns_after_netns_gone(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(2, spoofchk="off", ipam=node.host_local())
    assert node.run("ADD", conf, pod)[1] == 0
    assert delete_netns_and_revive(node, pod, node.vf(2)) == ["net1"]
    assert node.run("DEL", conf, "") == (None, 0)


def test_vf_comes_back_under_a_fallback_name_when_its_name_was_taken(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(0)
    assert node.run("ADD", conf, pod)[1] == 0
    squatter = node.vf_netdev(0)
    subprocess.run(["ip", "link", "add", squatter, "type", "veth", "peer", "name", squatter[:11] + "sq"], check=True)
    try:
        assert node.run("DEL", conf, pod) == (None, 0)
        back = node.ctx.netlink.device_netdev(node.vf(0))
        assert back is not None and back != squatter and back.startswith("sv")
    finally:
        subprocess.run(["ip", "link", "del", squatter], check=True)
    # give the VF its name back so the leak check compares like with like
    node.ctx.netlink.rename_link(back, squatter)


def test_addresses_are_announced_to_the_neighbours(node: Node, netns: NetnsFactory) -> None:
    """A gratuitous ARP for the new address reaches the PF's switch (the bridge standing for it)."""
    import socket
    import struct

    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sniffer.bind((node.pf, 0x0806))
    sniffer.settimeout(3)
    pod = netns()
    conf = node.conf(2, ipam={"type": "static", "addresses": [{"address": "10.44.0.4/24"}]})
    try:
        assert node.run("ADD", conf, pod)[1] == 0
        mac = pod_link(pod, "net1")["address"]  # type: ignore[index]
        seen = []
        while True:
            try:
                frame = sniffer.recv(2048)
            except TimeoutError:
                break
            sender_ip, target_ip = socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42])
            op = struct.unpack("!H", frame[20:22])[0]
            seen.append((op, frame[22:28].hex(":"), sender_ip, target_ip))
            if sender_ip == "10.44.0.4":
                break
        assert (1, mac, "10.44.0.4", "10.44.0.4") in seen
    finally:
        sniffer.close()
        assert node.run("DEL", conf, pod)[1] == 0


def test_ipv6_addresses_are_announced_with_unsolicited_na(node: Node, netns: NetnsFactory) -> None:
    import ipaddress
    import socket

    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
    sniffer.bind((node.pf, 0x86DD))
    sniffer.settimeout(3)
    pod = netns()
    conf = node.conf(3, ipam={"type": "static", "addresses": [{"address": "fd00:44::4/64"}]})
    target = ipaddress.IPv6Address("fd00:44::4").packed
    try:
        assert node.run("ADD", conf, pod)[1] == 0
        found = False
        while not found:
            try:
                frame = sniffer.recv(2048)
            except TimeoutError:
                break
            icmp = frame[14 + 40:]
            found = frame[20] == 58 and icmp[0] == 136 and icmp[8:24] == target and bool(icmp[4] & 0x20)
        assert found, "no unsolicited neighbour advertisement (override flag) for fd00:44::4"
    finally:
        sniffer.close()
        assert node.run("DEL", conf, pod)[1] == 0


def test_del_with_an_unusable_config(node: Node, netns: NetnsFactory) -> None:
    """A DEL must not fail on the config that made its ADD fail, or the runtime can never remove the pod."""
    from sriovkit.cni.plugin import run_cni

    pod = netns()
    bad = node.conf(0, vlan=9999)
    out, code = node.run("ADD", bad, pod)
    assert code == 1 and "vlan 9999" in out["details"]
    assert node.run("DEL", bad, pod) == (None, 0)  # nothing attached: nothing to do
    assert run_cni(node.env("DEL", pod), b"{garbage", node.ctx) == (b"", 0)
    assert node.run("DEL", node.conf(0, version="9.9.9"), pod) == (None, 0)
    # attached, then DEL'd with a broken config: the config ADD accepted is used
    good = node.conf(0, vlan=44, ipam=node.host_local())
    assert node.run("ADD", good, pod)[1] == 0
    assert run_cni(node.env("DEL", pod), b"{garbage", node.ctx) == (b"", 0)
    assert pod_link(pod, "net1") is None


def test_vf_back_from_a_dead_netns_under_a_kernel_name_is_renamed(node: Node, netns: NetnsFactory) -> None:
    """Two pods' VFs both called net1: the second to come back gets a devN name; DEL finds it by PCI."""
    pods = [netns(), netns()]
    confs = [node.conf(0), node.conf(1)]
    for i in range(2):
        assert node.run("ADD", confs[i], pods[i], CNI_CONTAINERID=f"pod{i}")[1] == 0
    first = delete_netns_and_revive(node, pods[0], node.vf(0))
    second = delete_netns_and_revive(node, pods[1], node.vf(1))
    assert first == ["net1"] and second != ["net1"]  # the host already had a net1
    for i in (1, 0):
        assert node.run("DEL", confs[i], "", CNI_CONTAINERID=f"pod{i}") == (None, 0)
    assert [node.ctx.netlink.device_netdev(node.vf(i)) for i in range(2)] == [node.vf_netdev(0), node.vf_netdev(1)]
