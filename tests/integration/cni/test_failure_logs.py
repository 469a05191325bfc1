"""Every failed CNI call is logged once, with the pod's namespace/name from CNI_ARGS, whichever step
refused it: the environment, the config (a NAD's mistake), the node."""

from __future__ import annotations

import json
import logging

import pytest

from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.integration.cni.conftest import Node
from tests.integration.conftest import NetnsFactory

pytestmark = pytest.mark.root
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c1"


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


def test_success_logs_no_failure(node: Node, netns: NetnsFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sriovkit.cni")
    pod = netns()
    out, code = run_cni(node.env("ADD", pod, CNI_ARGS=POD_ARGS), json.dumps(node.conf(0)).encode(), node.ctx)
    assert code == 0, out
    assert _failures(caplog) == []
    run_cni(node.env("DEL", pod, CNI_ARGS=POD_ARGS), json.dumps(node.conf(0)).encode(), node.ctx)
