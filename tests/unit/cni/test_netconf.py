"""Network config parsing: upstream sriov-cni's fields, defaults and precedence."""

from __future__ import annotations

from typing import Any

import pytest

from sriovkit.cni.netconf import decode, parse_cni_args, parse_netconf
from sriovkit.cni.spec import CniError, ErrorCode
from sriovkit.netlink.model import LinkState, VlanProto

BASE: dict[str, Any] = {"cniVersion": "1.0.0", "name": "sriov-net", "type": "sriov", "deviceID": "0000:3b:02.4"}


def conf(**extra: Any) -> dict[str, Any]:
    return {**BASE, **extra}


def problems(data: dict[str, Any], **kw: Any) -> str:
    with pytest.raises(CniError) as err:
        parse_netconf(data, **kw)
    assert err.value.code == ErrorCode.INVALID_CONFIG
    return err.value.details


def test_defaults_leave_everything_untouched() -> None:
    c = parse_netconf(conf())
    assert c.device_id == "0000:3b:02.4"
    assert (c.vlan, c.vlan_qos, c.vlan_proto, c.mac, c.spoofchk, c.trust, c.link_state) == (None,) * 7
    assert (c.min_tx_rate, c.max_tx_rate, c.mtu, c.ipam, c.log_level, c.log_file) == (None, None, None, {}, "info", "")


def test_every_field_parsed_with_upstream_spellings() -> None:
    c = parse_netconf(conf(vlan=100, vlanQoS=3, vlanProto="802.1ad", mac="02:AA:bb:00:00:01", spoofchk="off",
                           trust="on", link_state="disable", min_tx_rate=10, max_tx_rate=100, mtu=9000,
                           logLevel="debug", logFile="/tmp/x.log", ipam={"type": "host-local"}))
    assert (c.vlan, c.vlan_qos, c.vlan_proto) == (100, 3, VlanProto.DOT1AD)
    assert c.mac == "02:aa:bb:00:00:01"
    assert (c.spoofchk, c.trust, c.link_state) == (False, True, LinkState.DISABLE)
    assert (c.min_tx_rate, c.max_tx_rate, c.mtu) == (10, 100, 9000)
    assert (c.log_level, c.log_file, c.ipam_type) == ("debug", "/tmp/x.log", "host-local")


def test_vlan_defaults_qos_0_and_proto_802_1q_uppercase_accepted() -> None:
    c = parse_netconf(conf(vlan=7, vlanProto="802.1Q"))
    assert (c.vlan, c.vlan_qos, c.vlan_proto) == (7, 0, VlanProto.DOT1Q)


def test_all_problems_reported_at_once_naming_field_and_value() -> None:
    text = problems(conf(vlan=5000, spoofchk="maybe", link_state="up", mtu=10, mac="zz", min_tx_rate=-1))
    for needle in ("vlan 5000", "0-4094", 'spoofchk "maybe"', 'link_state "up"', "mtu 10", 'mac "zz"',
                   "min_tx_rate -1"):
        assert needle in text
    assert text.count(";") == 5


@pytest.mark.parametrize(("extra", "needle"), [
    ({"vlanQoS": 2}, "vlanQoS needs vlan"),
    ({"vlanProto": "802.1ad"}, "vlanProto needs vlan"),
    ({"vlan": 0, "vlanQoS": 2}, "non-zero vlan"),
    ({"vlan": 0, "vlanProto": "802.1ad"}, "non-zero vlan"),
    ({"vlan": 1, "vlanQoS": 8}, "vlanQoS 8"),
    ({"vlan": 1, "vlanProto": "qinq"}, 'vlanProto "qinq"'),
    ({"vlan": "1"}, "must be an integer"),
    ({"vlan": True}, "must be an integer"),
    ({"min_tx_rate": 200, "max_tx_rate": 100}, "above max_tx_rate"),
    ({"trust": "yes"}, 'trust "yes"'),
    ({"mac": "01:00:5e:00:00:01"}, "multicast"),
    ({"logLevel": "verbose"}, 'logLevel "verbose"'),
    ({"ipam": "host-local"}, "ipam"),
    ({"ipam": {"type": "../../bin/sh"}}, "ipam.type"),
    ({"driver": "vfio pci"}, "driver"),
    ({"deviceID": "../../etc"}, "not a PCI address"),
    ({"deviceID": "0000:3b:02.4/../x"}, "not a PCI address"),
    ({"deviceID": "0000:3b:02.4\n"}, "not a PCI address"),
    ({"mac": "02:00:00:00:00:01\n"}, "not a MAC address"),
    ({"name": ""}, "name is required"),
])
def test_rejections(extra: dict[str, Any], needle: str) -> None:
    assert needle in problems(conf(**extra))


def test_device_sources_and_short_form() -> None:
    data = {k: v for k, v in BASE.items() if k != "deviceID"}
    assert parse_netconf({**data, "pciBusID": "3B:02.4"}).device_id == "0000:3b:02.4"
    assert parse_netconf({**data, "runtimeConfig": {"DeviceID": "0000:3b:02.5"}}).device_id == "0000:3b:02.5"
    assert "deviceID is required" in problems(data)
    assert parse_netconf(data, need_device=False).device_id is None
    assert "different values" in problems({**data, "deviceID": "0000:3b:02.4", "pciBusID": "0000:3b:02.5"})


def test_mac_precedence_runtime_config_over_cni_args_over_config() -> None:
    args = {"MAC": "02:00:00:00:00:02"}
    assert parse_netconf(conf(mac="02:00:00:00:00:01")).mac == "02:00:00:00:00:01"
    assert parse_netconf(conf(mac="02:00:00:00:00:01"), cni_args=args).mac == "02:00:00:00:00:02"
    rc = {"runtimeConfig": {"Mac": "02:00:00:00:00:03"}}
    assert parse_netconf(conf(mac="02:00:00:00:00:01", **rc), cni_args=args).mac == "02:00:00:00:00:03"


def test_device_info_file_from_capitalised_runtime_config() -> None:
    c = parse_netconf(conf(runtimeConfig={"CNIDeviceInfoFile": "/var/run/devinfo/x.json"}))
    assert c.device_info_file == "/var/run/devinfo/x.json"
    assert "absolute path" in problems(conf(runtimeConfig={"cniDeviceInfoFile": "rel/x.json"}))


def test_unknown_fields_are_ignored_like_upstream() -> None:
    assert parse_netconf(conf(master="eth1", vf=3, someVendorKey={"a": 1})).name == "sriov-net"


def test_decode_errors() -> None:
    for bad in (b"{", b"[1]", b"\xff"):
        with pytest.raises(CniError) as err:
            decode(bad)
        assert err.value.code == ErrorCode.DECODE_FAILURE


def test_cni_args() -> None:
    assert parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=p;MAC=02:00:00:00:00:09") == {
        "IgnoreUnknown": "1", "K8S_POD_NAME": "p", "MAC": "02:00:00:00:00:09"}
    with pytest.raises(CniError) as err:
        parse_cni_args("IgnoreUnknown")
    assert err.value.code == ErrorCode.INVALID_ENV


@pytest.mark.parametrize(("extra", "check"), [
    ({"Vlan": 100, "VLANQOS": 3, "VlanProto": "802.1ad"}, lambda c: (c.vlan, c.vlan_qos, c.vlan_proto) ==
     (100, 3, VlanProto.DOT1AD)),
    ({"MAC": "02:00:00:00:00:07", "SpoofChk": "off", "Link_State": "enable"},
     lambda c: (c.mac, c.spoofchk, c.link_state) == ("02:00:00:00:00:07", False, LinkState.ENABLE)),
    ({"MIN_TX_RATE": 10, "Max_Tx_Rate": 4294967295, "MTU": 9000}, lambda c: (c.min_tx_rate, c.max_tx_rate, c.mtu)
     == (10, 4294967295, 9000)),
    ({"IPAM": {"Type": "host-local", "subnet": "10.0.0.0/24"}}, lambda c: c.ipam_type == "host-local"
     and c.ipam["subnet"] == "10.0.0.0/24"),
    ({"RuntimeConfig": {"MAC": "02:00:00:00:00:08"}}, lambda c: c.mac == "02:00:00:00:00:08"),
    ({"vlan": -0}, lambda c: c.vlan == 0),
])
def test_keys_match_case_insensitively_as_upstream_decodes_them(extra: dict[str, Any], check: Any) -> None:
    assert check(parse_netconf(conf(**extra)))


def test_the_last_of_a_key_given_twice_wins_and_null_clears_it() -> None:
    c = parse_netconf(b'{"cniVersion":"1.0.0","name":"n","deviceID":"0000:3b:02.4","vlan":5,"Vlan":6}')
    assert c.vlan == 6
    assert c.warnings == ("Vlan: vlan given again (first as vlan): the last one is used, as upstream uses it "
                          "(value: 6)",)
    c = parse_netconf(b'{"cniVersion":"1.0.0","name":"n","deviceID":"0000:3b:02.4","vlan":5,"vlan":null}')
    assert c.vlan is None


@pytest.mark.parametrize(("extra", "needle"), [
    ({"runtimeConfig": "x"}, 'runtimeConfig "x" must be an object'),
    ({"runtimeConfig": ["x"]}, "runtimeConfig"),
    ({"runtimeConfig": {"mac": 5}}, "runtimeConfig.mac 5 must be a string"),
    ({"ipam": {"type": 5}}, "ipam.type 5 must be a string"),
    ({"dns": {"nameservers": "8.8.8.8"}}, "dns.nameservers"),
    ({"capabilities": {"mac": "yes"}}, "capabilities.mac"),
    ({"prevResult": []}, "prevResult"),
    ({"vlan": 1.0}, "vlan 1.0 must be an integer"),
    ({"vlan": 1e2}, "must be an integer"),
    ({"mtu": 1500.5}, "mtu 1500.5 must be an integer"),
    ({"min_tx_rate": 2 ** 32}, "min_tx_rate 4294967296 invalid: value must be in the range 0-4294967295"),
    ({"max_tx_rate": 2 ** 64}, "max_tx_rate 18446744073709551616 must be an integer"),
    ({"max_tx_rate": -(2 ** 63) - 1}, "max_tx_rate"),
    ({"vlan": 2 ** 63}, "vlan"),
    ({"vlanQoS": True, "vlan": 1}, "vlanQoS true must be an integer"),
    ({"spoofchk": True}, "spoofchk true must be a string"),
    ({"trust": 1}, "trust 1 must be a string"),
    ({"deviceID": 3}, "deviceID 3 must be a string"),
    ({"mac": "00:00:00:00:00:00"}, "zero address"),
    ({"mac": "ff:ff:ff:ff:ff:ff"}, "broadcast"),
    ({"mac": "33:33:00:00:00:01"}, "multicast"),
    ({"runtimeConfig": {"mac": "00:00:00:00:00:00"}}, "runtimeConfig.mac 00:00:00:00:00:00 is the zero address"),
    ({"OrigVfState": {"Vlan": "x"}}, "OrigVfState.Vlan"),
    ({"cni.dev/valid-attachments": [{"containerID": 5}]}, "cni.dev/valid-attachments[0].containerID 5"),
])
def test_wrong_types_and_values_that_cannot_work_are_refused(extra: dict[str, Any], needle: str) -> None:
    assert needle in problems(conf(**extra))


def test_unknown_fields_are_listed_as_warnings() -> None:
    c = parse_netconf(conf(master="eth1", colour={"r": 1}, Vlan=7))
    assert c.vlan == 7
    # master names the seeds' PF, which deviceID overrides (upstream derives its Master from deviceID)
    assert c.pf is None
    assert c.warnings == ('colour: unknown field: ignored, as upstream ignores it (value: {"r": 1})',
                          f'master "eth1": deviceID {c.device_id} given too, which wins; ignored')
    assert parse_netconf(conf(runtimeConfig={"portMappings": [], "ips": ["10.0.0.1/24"]})).warnings == ()


@pytest.mark.parametrize("stdin", [b"[" * 1000 + b"]" * 1000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
                                   b'{"cniVersion":"1.0.0","name":"n","vlan":NaN}', b'{"a":Infinity}',
                                   b'\xef\xbb\xbf{"cniVersion":"1.0.0"}', b'{"cniVersion":"1.0.0"} {}', b"null",
                                   b'"x"', b"[" * 200000])
def test_undecodable_stdin_is_a_decoding_failure(stdin: bytes) -> None:
    with pytest.raises(CniError) as err:
        decode(stdin)
    assert err.value.code == ErrorCode.DECODE_FAILURE and "\n" not in err.value.details


@pytest.mark.parametrize(("value", "expected", "warned"), [
    (None, "text", False), ("text", "text", False), ("json", "json", False),
    ("JSON", "text", True), ("xml", "text", True), (5, "text", True), ({"a": 1}, "text", True),
])
def test_log_format_is_sriovkits_own_and_never_refuses_a_config(value: Any, expected: str, warned: bool) -> None:
    conf = parse_netconf({**BASE, "logFormat": value} if value is not None else BASE)
    assert conf.log_format == expected
    assert any("logFormat" in w for w in conf.warnings) == warned
