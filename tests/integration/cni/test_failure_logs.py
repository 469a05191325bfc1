"""Every failed CNI call is logged once, with the pod's namespace/name from CNI_ARGS, whichever step
refused it: the environment, the config (a NAD's mistake), the node. Every line of a call carries
the pod, container, ifname, PCI address and netns; in JSON (the agent's --log-format json) too."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest

from sriovkit import logs
from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import Node, NodeFactory
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c1"


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("sriovkit") and r.levelno >= logging.ERROR]


def _fields(line: str) -> dict[str, str]:
    """A `key=value ...` line as a dict (values quoted when they hold spaces)."""
    return {key: value.strip('"') for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line)}


def _failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "sriovkit.cni" and r.levelno >= logging.ERROR and "event=failed" in r.getMessage()]


@pytest.mark.parametrize(("case", "expected"), [
    ("vlan-out-of-range", ErrorCode.INVALID_CONFIG),
    ("qos-without-vlan", ErrorCode.INVALID_CONFIG),
    ("not-json", ErrorCode.DECODE_FAILURE),
    ("bad-ifname", ErrorCode.INVALID_ENV),
    ("old-version-for-check", ErrorCode.INCOMPATIBLE_VERSION),
    ("no-such-device", None),
])
def test_each_failure_is_logged_once_with_the_pod(node: Node, netns: NetnsFactory, caplog: pytest.LogCaptureFixture,
                                                 case: str, expected: int | None) -> None:
    caplog.set_level(logging.DEBUG, logger="sriovkit.cni")
    pod = netns()
    env = node.env("ADD", pod, CNI_ARGS=POD_ARGS)
    conf = node.conf(0)
    if case == "vlan-out-of-range":
        conf["vlan"] = 5000
    elif case == "qos-without-vlan":
        conf["vlanQoS"] = 3
    elif case == "bad-ifname":
        env["CNI_IFNAME"] = "../x"
    elif case == "old-version-for-check":
        env["CNI_COMMAND"] = "CHECK"
        conf["cniVersion"] = "0.3.1"
    elif case == "no-such-device":
        conf["deviceID"] = "0000:99:1f.7"
    stdin = b'{"cniVersion": "1.0.0", "name": ' if case == "not-json" else json.dumps(conf).encode()
    out, code = run_cni(env, stdin, node.ctx)
    answer = json.loads(out)
    assert code == 1
    if expected is not None:
        assert answer["code"] == expected
    (line,) = _failures(caplog)
    assert "pod=team-a/web-0" in line and f"code={answer['code']}" in line and "container=c1" in line
    assert json.dumps(answer["msg"])[1:-1].split(":")[0].split(" ")[0] in line
    assert _errors(caplog) == [line], "the failure is logged once, by the top of the call"
    assert _fields(line)["netns"] == env["CNI_NETNS"]


@pytest.mark.parametrize("refused", ["vlan", "mac"])
def test_a_step_refused_by_the_node_is_logged_once(node_factory: NodeFactory, netns: NetnsFactory,
                                                   caplog: pytest.LogCaptureFixture, refused: str) -> None:
    caplog.set_level(logging.DEBUG, logger="sriovkit")
    node = node_factory(unsupportedVfSettings=[refused])
    pod = netns()
    conf = node.conf(1, ipam=node.host_local(), vlan=10, mac="02:00:00:00:10:01")
    out, code = run_cni(node.env("ADD", pod, CNI_ARGS=POD_ARGS), json.dumps(conf).encode(), node.ctx)
    answer = json.loads(out)
    assert code == 1 and answer["code"] == ErrorCode.SETTING_REFUSED
    (line,) = _errors(caplog)  # not once by the step and again by the call
    fields = _fields(line)
    assert fields["event"] == "failed" and fields["msg"] == answer["msg"]
    assert fields["details"] == answer["details"]


def test_every_line_of_a_call_names_pod_container_ifname_pci_and_netns(node: Node, netns: NetnsFactory,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sriovkit.cni")
    pod = netns()
    conf = node.conf(0, ipam=node.host_local())
    try:
        out, code = run_cni(node.env("ADD", pod, CNI_ARGS=POD_ARGS), json.dumps(conf).encode(), node.ctx)
        assert code == 0, out
        checked = {**conf, "prevResult": json.loads(out)}
        out, code = run_cni(node.env("CHECK", pod, CNI_ARGS=POD_ARGS), json.dumps(checked).encode(), node.ctx)
        assert code == 0, out
    finally:
        out, code = run_cni(node.env("DEL", pod, CNI_ARGS=POD_ARGS), json.dumps(conf).encode(), node.ctx)
        assert code == 0, out
    lines = [_fields(r.getMessage()) for r in caplog.records if r.name == "sriovkit.cni"]
    assert {line["event"] for line in lines} >= {"attached", "checked", "detached"}
    for line in lines:
        assert (line["pod"], line["container"], line["ifname"], line["pci"], line["netns"]) == (
            "team-a/web-0", "c1", "net1", node.vf(0), pod), line


def test_json_lines_carry_the_same_fields(node: Node, netns: NetnsFactory) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    cni_log = logging.getLogger("sriovkit.cni")
    cni_log.addHandler(handler)
    level = cni_log.level
    cni_log.setLevel(logging.DEBUG)
    try:
        pod = netns()
        conf = node.conf(0)
        conf["vlan"] = 5000
        out, code = run_cni(node.env("ADD", pod, CNI_ARGS=POD_ARGS), json.dumps(conf).encode(), node.ctx)
    finally:
        cni_log.removeHandler(handler)
        cni_log.setLevel(level)
    assert code == 1
    (failure,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert failure["level"] == "error" and failure["msg"] == "failed" and failure["logger"] == "sriovkit.cni"
    assert failure["code"] == ErrorCode.INVALID_CONFIG and failure["pod"] == "team-a/web-0"
    assert (failure["container"], failure["ifname"], failure["netns"]) == ("c1", "net1", pod)
    assert failure["pci"] == node.vf(0) and failure["time"].endswith("Z")


def test_success_logs_no_failure(node: Node, netns: NetnsFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sriovkit.cni")
    pod = netns()
    out, code = run_cni(node.env("ADD", pod, CNI_ARGS=POD_ARGS), json.dumps(node.conf(0)).encode(), node.ctx)
    assert code == 0, out
    assert _failures(caplog) == []
    run_cni(node.env("DEL", pod, CNI_ARGS=POD_ARGS), json.dumps(node.conf(0)).encode(), node.ctx)


def test_log_format_json_in_the_config_writes_its_log_file_as_json(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    log_file = Path(node.ctx.log_dir) / f"sriov-{node.pf}.log"
    conf = node.conf(0, ipam=node.host_local(), logFile=str(log_file), logFormat="json", logLevel="debug")
    for command in ("ADD", "DEL"):
        out, code = run_cni(node.env(command, pod, CNI_ARGS=POD_ARGS), json.dumps(conf).encode(), node.ctx)
        assert code == 0, out
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {line["msg"] for line in lines} >= {"attached", "detached"}
    for line in lines:
        assert (line["pod"], line["container"], line["ifname"], line["pci"], line["netns"]) == (
            "team-a/web-0", "c1", "net1", node.vf(0), pod), line


def test_a_log_file_refused_is_one_warning_with_the_call_context(node: Node, netns: NetnsFactory,
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG, logger="sriovkit.cni")
    pod = netns()
    outside = tmp_path.parent / f"outside-{node.pf}.log"  # not inside the node's log directory
    conf = node.conf(0, logFile=str(outside))
    for command in ("ADD", "DEL"):
        out, code = run_cni(node.env(command, pod, CNI_ARGS=POD_ARGS), json.dumps(conf).encode(), node.ctx)
        assert code == 0, out
    refused = [_fields(r.getMessage()) for r in caplog.records if "not written" in r.getMessage()]
    assert len(refused) == 2  # once per call
    for line in refused:
        assert (line["level"], line["pod"], line["ifname"], line["netns"], line["pci"]) == (
            "warning", "team-a/web-0", "net1", pod, node.vf(0))
    assert not outside.exists()
