"""Hostile inputs: path traversal and odd characters are rejected before anything changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import Node
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize(("var", "value"), [
    ("CNI_CONTAINERID", "../../../../tmp/evil"),
    ("CNI_CONTAINERID", "abc/../../x"),
    ("CNI_CONTAINERID", "a\nb"),
    ("CNI_IFNAME", "../../x"),
    ("CNI_IFNAME", "eth0\x00"),
    ("CNI_IFNAME", "averyveryverylongname"),
])
def test_traversal_in_env_rejected(node: Node, netns: NetnsFactory, tmp_path: Path, command: str, var: str,
                                   value: str) -> None:
    pod = netns()
    conf = {**node.conf(0, ipam=node.host_local()), "prevResult": {"cniVersion": "1.0.0"}}
    out, code = node.run(command, conf, pod, **{var: value})
    assert code == 1 and out["code"] == ErrorCode.INVALID_ENV and var in out["details"]
    assert not node.state_dir.exists()  # nothing written, not even the state dir
    assert pod_link(pod, "net1") is None


@pytest.mark.parametrize("device", ["../../../etc/passwd", "0000:11:00.1/../../x", "0000:11:00.1\n", "*"])
def test_traversal_in_device_id_rejected(node: Node, netns: NetnsFactory, device: str) -> None:
    pod = netns()
    out, code = node.run("ADD", {**node.conf(0), "deviceID": device}, pod)
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG and "deviceID" in out["details"]
    assert not node.state_dir.exists()


def test_ipam_type_with_a_path_rejected(node: Node, netns: NetnsFactory) -> None:
    out, code = node.run("ADD", node.conf(0, ipam={"type": "../../../bin/true"}), netns())
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG and "ipam.type" in out["details"]


def test_config_that_is_not_an_object_rejected(node: Node, netns: NetnsFactory) -> None:
    raw, code = run_cni(node.env("ADD", netns()), b'["not", "an", "object"]', node.ctx)
    assert code == 1 and json.loads(raw)["code"] == ErrorCode.DECODE_FAILURE


DEEP = b'{"cniVersion": "1.0.0", "name": "n", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
UNDECODABLE = [DEEP, b"[" * 100_000, b'{"cniVersion": "1.0.0", "name": "n", "vlan": NaN}', b"\xff\xfe{}",
               b'{"cniVersion": "1.0.0", "name": "n"} trailing']


@pytest.mark.parametrize("stdin", UNDECODABLE, ids=["deep-1000", "deep-100000", "nan", "utf16-bom", "trailing"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
def test_undecodable_stdin_answers_the_spec_error_and_changes_nothing(node: Node, netns: NetnsFactory,
                                                                      command: str, stdin: bytes) -> None:
    before = node.views()
    raw, code = run_cni(node.env(command, netns()), stdin, node.ctx)
    if command == "DEL":  # nothing attached: DEL of an unusable config succeeds, so the runtime can move on
        assert (raw, code) == (b"", 0)
    else:
        out = json.loads(raw)
        assert code == 1 and out["code"] == ErrorCode.DECODE_FAILURE and out["msg"], out
    assert node.views() == before and not node.state_dir.exists()


@pytest.mark.parametrize("stdin", UNDECODABLE, ids=["deep-1000", "deep-100000", "nan", "utf16-bom", "trailing"])
def test_version_answers_whatever_stdin_holds(node: Node, stdin: bytes) -> None:
    raw, code = run_cni({"CNI_COMMAND": "VERSION"}, stdin, node.ctx)
    assert code == 0 and "supportedVersions" in json.loads(raw)


def test_case_varied_netconf_is_applied_as_upstream_applies_it(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = {"CNIVersion": "1.0.0", "Name": "n", "Type": "sriov", "DeviceID": node.vf(1), "Vlan": 100,
            "VlanQoS": 2, "SpoofChk": "off"}
    out, code = node.run("ADD", conf, pod)
    assert code == 0, out
    settings = node.ctx.netlink.vf_settings(node.pf, 1)
    assert (settings.vlan, settings.qos, settings.spoofchk) == (100, 2, False)
    assert node.run("DEL", conf, pod) == (None, 0)
    assert node.ctx.netlink.vf_settings(node.pf, 1).vlan != 100


@pytest.mark.parametrize(("field", "value"), [("min_tx_rate", 2 ** 32), ("max_tx_rate", 2 ** 64),
                                              ("mac", "00:00:00:00:00:00"), ("mac", "ff:ff:ff:ff:ff:ff"),
                                              ("runtimeConfig", "x"), ("vlan", 1.0), ("vlan", True)])
def test_values_that_cannot_work_are_refused_before_the_vf_moves(node: Node, netns: NetnsFactory, field: str,
                                                                 value: Any) -> None:
    pod = netns()
    before = node.views()
    out, code = node.run("ADD", node.conf(2, **{field: value}), pod)
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG and field in out["details"], out
    assert node.views() == before and pod_link(pod, "net1") is None


def test_ignored_netconf_fields_are_logged_and_counted(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    import dataclasses

    counted: list[tuple[str, int]] = []
    ctx = dataclasses.replace(node.ctx, on_config_warnings=lambda kind, n: counted.append((kind, n)))
    pod, log = netns(), tmp_path / "cni.log"
    conf = {**node.conf(3), "Colour": "red", "vlan": 7, "logFile": str(log)}
    raw, code = run_cni(node.env("ADD", pod), json.dumps(conf).encode(), ctx)
    assert code == 0, raw
    assert counted == [("netconf", 1)]
    assert 'Colour: unknown field: ignored, as upstream ignores it (value: \\"red\\")' in log.read_text()
    assert node.ctx.netlink.vf_settings(node.pf, 3).vlan == 7
    raw, code = run_cni(node.env("DEL", pod), json.dumps(conf).encode(), ctx)
    assert (raw, code) == (b"", 0)
