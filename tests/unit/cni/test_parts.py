"""Pure parts: IPAM output parsing and lookup, log lines, announcement frames, VF settings, device info."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import struct
from pathlib import Path

import pytest

from sriovkit.cni import vfconfig
from sriovkit.cni.announce import garp_frame, na_frame, unsolicited_na
from sriovkit.cni.device import Mode, resolve_device
from sriovkit.cni.deviceinfo import remove_device_info, write_device_info
from sriovkit.cni.ipam import IpamCall, IpamError, _parse_output, find_plugin, ipam_add
from sriovkit.cni.log import EventLog
from sriovkit.cni.netconf import parse_netconf
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.devinfo import pci_device_info
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.model import LinkState, VfSettings, VlanProto

BASE = {"cniVersion": "1.0.0", "name": "n", "deviceID": "0000:3b:02.4"}


def test_ipam_error_json_keeps_the_plugins_code() -> None:
    with pytest.raises(IpamError) as err:
        _parse_output("host-local", "ADD", 1, b'{"code": 11, "msg": "busy", "details": "d"}', b"")
    assert (err.value.code, err.value.details) == (11, "d")
    assert "host-local ADD failed: busy" in err.value.msg


def test_ipam_crash_without_json_reports_stderr() -> None:
    with pytest.raises(IpamError) as err:
        _parse_output("x", "DEL", 2, b"", b"panic: boom")
    assert err.value.code == ErrorCode.IPAM_FAILED and err.value.details == "panic: boom"
    with pytest.raises(IpamError) as err:
        _parse_output("x", "ADD", 0, b"not json", b"")
    assert err.value.code == ErrorCode.DECODE_FAILURE


def test_find_plugin_searches_cni_path_in_order(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    plugin = tmp_path / "b" / "my-ipam"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "a" / "my-ipam").write_text("not executable")
    assert find_plugin("my-ipam", (str(tmp_path / "a"), str(tmp_path / "b"))) == str(plugin)
    with pytest.raises(IpamError, match="not found"):
        find_plugin("other", (str(tmp_path / "a"),))


def test_ipam_add_with_the_real_host_local_downgrades_1_1_0(tmp_path: Path) -> None:
    config = {"cniVersion": "1.1.0", "name": "n",
              "ipam": {"type": "host-local", "subnet": "10.5.0.0/29", "dataDir": str(tmp_path)}}
    call = IpamCall("host-local", ("/usr/lib/cni",), "cid", "/proc/self/ns/net", "eth0", "", config)
    result = ipam_add(call)
    assert result.ips[0].address == "10.5.0.2/29"


def test_log_lines_are_key_value_with_pod_and_device(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    log = EventLog(command="ADD", container="f" * 64, ifname="net1", level="info", log_file=str(path),
                   log_dir=str(tmp_path))
    log.bind(pci="0000:3b:02.4")
    log.debug("hidden")
    log.info("moved", to='ns "x"')
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith('level=info event=moved command=ADD container=ffffffffffff ifname=net1 '
                             'pci=0000:3b:02.4 to="ns \\"x\\""')
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_log_format_json_writes_the_log_file_as_json_objects(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    log = EventLog(command="DEL", container="f" * 64, ifname="net1", log_dir=str(tmp_path))
    log.configure(level="debug", log_file=str(path), log_format="json")
    log.bind(pci="0000:3b:02.4", pod="team-a/web-0", netns="/var/run/netns/p")
    log.debug("step", step="vlan 10")
    log.error("failed", code=101, msg='say "no"\nthen stop')
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert (first["level"], first["msg"], first["step"]) == ("debug", "step", "vlan 10")
    assert (second["level"], second["msg"], second["code"], second["msg"]) == ("error", "failed", 101, "failed")
    for line in (first, second):
        assert (line["command"], line["container"], line["ifname"], line["pci"], line["pod"], line["netns"]) == (
            "DEL", "f" * 12, "net1", "0000:3b:02.4", "team-a/web-0", "/var/run/netns/p")
        assert line["logger"] == "sriovkit.cni" and str(line["time"]).endswith("Z")


def test_garp_frame_layout() -> None:
    frame = garp_frame("02:00:00:00:00:01", "10.0.0.5")
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("020000000001")
    assert struct.unpack("!HHHBBH", frame[12:22]) == (0x0806, 1, 0x0800, 6, 4, 1)
    assert frame[28:32] == frame[38:42] == bytes([10, 0, 0, 5])


def test_unsolicited_na_layout() -> None:
    body = unsolicited_na("02:00:00:00:00:01", "fd00::5")
    assert body[0] == 136 and struct.unpack("!I", body[4:8])[0] == 0x20000000
    assert body[8:24] == ipaddress.IPv6Address("fd00::5").packed
    assert body[24:26] == b"\x02\x01" and body[26:] == bytes.fromhex("020000000001")


def test_na_frame_is_a_valid_ipv6_icmpv6_packet() -> None:
    frame = na_frame("02:00:00:00:00:01", "fd00::5")
    assert frame[:6] == bytes.fromhex("333300000001") and frame[12:14] == b"\x86\xdd"
    ip6, icmp = frame[14:54], frame[54:]
    assert ip6[0] >> 4 == 6 and ip6[6] == 58 and ip6[7] == 255  # next header ICMPv6, hop limit 255
    assert struct.unpack("!H", ip6[4:6])[0] == len(icmp) == 32
    assert ip6[8:24] == ipaddress.IPv6Address("fd00::5").packed
    assert ip6[24:40] == ipaddress.IPv6Address("ff02::1").packed
    # the one's-complement sum over pseudo-header and message (checksum included) is all ones
    pseudo = ip6[8:40] + struct.pack("!I3xB", len(icmp), 58)
    words = struct.unpack(f"!{(len(pseudo) + len(icmp)) // 2}H", pseudo + icmp)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF


class RecordingSwitch:
    """Records the PF-side calls wanted_settings/restore_setting make."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def __getattr__(self, name: str) -> object:
        return lambda *args: self.calls.append((name, *args))


def test_wanted_settings_only_what_is_configured_and_rates_keep_the_unset_side() -> None:
    original = VfSettings(vf_index=2, min_tx_rate=5, max_tx_rate=900)
    conf = parse_netconf({**BASE, "max_tx_rate": 100, "trust": "on"})
    wanted = vfconfig.wanted_settings(conf, original)
    assert [s.key for s in wanted] == ["rate", "trust"]
    switch = RecordingSwitch()
    for s in wanted:
        s.apply(switch, "pf0", 2)  # type: ignore[arg-type]
    assert switch.calls == [("set_vf_rate", "pf0", 2, 5, 100), ("set_vf_trust", "pf0", 2, True)]
    assert vfconfig.wanted_settings(parse_netconf(BASE), original) == []


def test_restore_puts_back_the_snapshot_values() -> None:
    original = VfSettings(vf_index=1, mac="02:00:00:00:00:07", vlan=4, qos=2, vlan_proto=VlanProto.DOT1AD,
                          spoofchk=False, trust=True, link_state=LinkState.DISABLE)
    switch = RecordingSwitch()
    for key in ("vlan", "mac", "spoofchk", "trust", "link_state"):
        vfconfig.restore_setting(switch, "pf0", 1, key, original)  # type: ignore[arg-type]
    assert switch.calls == [("set_vf_vlan", "pf0", 1, 4, 2, VlanProto.DOT1AD),
                            ("set_vf_mac", "pf0", 1, "02:00:00:00:00:07"), ("set_vf_spoofchk", "pf0", 1, False),
                            ("set_vf_trust", "pf0", 1, True), ("set_vf_link_state", "pf0", 1, LinkState.DISABLE)]
    assert vfconfig.settings_from_dict(vfconfig.settings_to_dict(original)) == original
    assert json.loads(json.dumps(vfconfig.settings_to_dict(original)))["vlan_proto"] == 0x88A8


def test_mismatches_name_each_drifted_setting() -> None:
    conf = parse_netconf({**BASE, "vlan": 5, "spoofchk": "off"})
    assert vfconfig.mismatches(conf, VfSettings(vf_index=0, vlan=5, spoofchk=False)) == []
    assert vfconfig.mismatches(conf, VfSettings(vf_index=0, vlan=6, spoofchk=True)) == [
        "vlan is 6 qos 0, config says 5 qos 0", "spoofchk is on, config says off"]


def test_device_info_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.json"
    info = pci_device_info("0000:3b:02.4", pf_pci_address="0000:3b:00.0")
    created = write_device_info(str(tmp_path), str(path), info)
    assert created is not None
    assert json.loads(path.read_text())["pci"] == {"pci-address": "0000:3b:02.4", "pf-pci-address": "0000:3b:00.0"}
    assert remove_device_info(str(tmp_path), str(path), created)
    assert not remove_device_info(str(tmp_path), str(path), created)
    assert not path.exists()
    assert os.listdir(path.parent) == []  # no temporary file left either


def test_resolve_device_kinds(make_host) -> None:  # type: ignore[no-untyped-def]
    host, _ = make_host({"name": "pfa", "numVfs": 2, "vfDrivers": {"1": "vfio-pci"}},
                        {"name": "pfb", "numVfs": 0, "totalVfs": 0})
    sysfs = Sysfs(host.root)
    vf0, vf1, pf_a, pf_b = host.vf_address(0, 0), host.vf_address(0, 1), host.pf_address(0), host.pf_address(1)
    d = resolve_device(sysfs, vf0, "pfav0")
    assert (d.mode, d.netdev, d.pf_netdev, d.vf_index) == (Mode.NETDEV, "pfav0", "pfa", 0)
    assert resolve_device(sysfs, vf1, None).mode is Mode.USERSPACE
    assert resolve_device(sysfs, vf0, "pfav0", want_driver="vfio-pci").mode is Mode.USERSPACE
    assert resolve_device(sysfs, pf_b, "pfb").mode is Mode.PF
    for address, netdev, needle in ((pf_a, "pfa", "is a PF with 2 VFs"), (vf0, None, "no network interface"),
                                    ("0000:77:00.0", None, "no such PCI device")):
        with pytest.raises(CniError, match=needle) as err:
            resolve_device(sysfs, address, netdev)
        assert err.value.code == ErrorCode.DEVICE_UNUSABLE
