"""The CNI protocol: versions, commands, results rendered per version, error JSON."""

from __future__ import annotations

import json

import pytest

from sriovkit.cni.spec import (
    SUPPORTED_VERSIONS,
    CniError,
    ErrorCode,
    Interface,
    IpConfig,
    Result,
    Route,
    best_common_version,
    check_version,
    dumps,
    parse_result,
    render_result,
)


def _result() -> Result:
    return Result(
        interfaces=[Interface(name="net1", mac="02:00:00:00:00:01", sandbox="/run/netns/p", mtu=9000,
                              pci_id="0000:12:00.1")],
        ips=[IpConfig("10.1.0.5/24", "10.1.0.1", 0), IpConfig("fd00::5/64", None, 0)],
        routes=[Route("0.0.0.0/0", "10.1.0.1", {"mtu": 1400, "priority": 5}), Route("fd01::/64")],
        dns={"nameservers": ["10.1.0.53"]},
    )


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_pre_1_0_results_carry_ip_versions_and_no_1_1_fields(version: str) -> None:
    out = render_result(_result(), version)
    assert out["cniVersion"] == version
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert "mtu" not in out["interfaces"][0] and "pciID" not in out["interfaces"][0]
    assert out["routes"][0] == {"dst": "0.0.0.0/0", "gw": "10.1.0.1"}


def test_1_0_0_drops_ip_version() -> None:
    out = render_result(_result(), "1.0.0")
    assert all("version" not in ip for ip in out["ips"])
    assert out["ips"][0] == {"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}
    assert "pciID" not in out["interfaces"][0]


def test_1_1_0_has_interface_mtu_pci_id_and_route_extras() -> None:
    out = render_result(_result(), "1.1.0")
    assert out["interfaces"][0] == {"name": "net1", "mac": "02:00:00:00:00:01", "mtu": 9000,
                                    "sandbox": "/run/netns/p", "pciID": "0000:12:00.1"}
    assert out["routes"][0] == {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1400, "priority": 5}
    assert out["dns"] == {"nameservers": ["10.1.0.53"]}


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_render_then_parse_round_trips(version: str) -> None:
    back = parse_result(render_result(_result(), version), "test")
    assert [ip.address for ip in back.ips] == ["10.1.0.5/24", "fd00::5/64"]
    assert back.routes[0].gw == "10.1.0.1"
    assert back.interfaces[0].name == "net1"


def test_parse_result_rejects_bad_addresses() -> None:
    with pytest.raises(CniError) as err:
        parse_result({"ips": [{"address": "10.1.0.500/24"}]}, "IPAM x result")
    assert err.value.code == ErrorCode.DECODE_FAILURE
    assert "IPAM x result" in err.value.msg


@pytest.mark.parametrize(("version", "command", "ok"), [
    ("1.1.0", "ADD", True), ("0.3.0", "ADD", True), ("0.3.1", "CHECK", False), ("0.4.0", "CHECK", True),
    ("1.0.0", "STATUS", False), ("1.1.0", "GC", True), ("0.2.0", "ADD", False), ("2.0.0", "DEL", False),
])
def test_check_version(version: str, command: str, ok: bool) -> None:
    if ok:
        check_version(version, command)
    else:
        with pytest.raises(CniError) as err:
            check_version(version, command)
        assert err.value.code == ErrorCode.INCOMPATIBLE_VERSION


def test_best_common_version_picks_newest_not_above_requested() -> None:
    offered = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]
    assert best_common_version("1.1.0", offered) == "1.0.0"
    assert best_common_version("0.4.0", offered) == "0.4.0"
    assert best_common_version("0.3.0", ["0.2.0"]) is None


def test_error_json_has_code_msg_details() -> None:
    body = json.loads(dumps(CniError(ErrorCode.INVALID_ENV, "bad env", "CNI_IFNAME").to_json("0.4.0")))
    assert body == {"cniVersion": "0.4.0", "code": 4, "msg": "bad env", "details": "CNI_IFNAME"}
    assert "details" not in CniError(7, "x").to_json("1.0.0")
