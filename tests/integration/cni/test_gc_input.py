"""GC decides which pods keep their VFs from `cni.dev/valid-attachments`: a list that is missing or
that cannot be read entirely is INVALID_CONFIG and releases nothing (issue 13 class 3)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import Node
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

MISSING = object()
GOOD = {"containerID": "pod0", "ifname": "net1"}
MALFORMED: list[Any] = [
    MISSING, None, {}, {"containerID": "pod0", "ifname": "net1"}, "pod0", 5, True,
    [5], ["pod0"], [None], [[]], [[GOOD]],
    [{"containerID": 5, "ifname": "net1"}],
    [{"containerID": "pod0", "ifname": 1}],
    [{"containerID": "pod0"}],
    [{"ifname": "net1"}],
    [{"containerID": None, "ifname": "net1"}],
    [{"containerID": "", "ifname": "net1"}],
    [{"containerID": ["pod0"], "ifname": "net1"}],
    [{"containerID": {"id": "pod0"}, "ifname": "net1"}],
    [GOOD, {"containerID": "pod1", "ifname": False}],
    [GOOD, 7],
]


def _gc(node: Node, attachments: Any, **extra: Any) -> tuple[bytes, int]:
    conf: dict[str, Any] = {"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov", **extra}
    if attachments is not MISSING:
        conf["cni.dev/valid-attachments"] = attachments
    return run_cni({"CNI_COMMAND": "GC", "CNI_PATH": "/usr/lib/cni"}, json.dumps(conf).encode(), node.ctx)


def _two_pods(node: Node, netns: NetnsFactory) -> tuple[list[str], list[dict[str, Any]]]:
    pods = [netns(), netns()]
    confs = [node.conf(i, version="1.1.0", vlan=40 + i) for i in range(2)]
    for i, (pod, conf) in enumerate(zip(pods, confs, strict=True)):
        result, code = node.run("ADD", conf, pod, CNI_CONTAINERID=f"pod{i}")
        assert code == 0, result
    return pods, confs


def _del_all(node: Node, pods: list[str], confs: list[dict[str, Any]]) -> None:
    for i, (pod, conf) in enumerate(zip(pods, confs, strict=True)):
        assert node.run("DEL", conf, pod, CNI_CONTAINERID=f"pod{i}")[1] == 0


@pytest.mark.parametrize("attachments", MALFORMED, ids=lambda v: "missing" if v is MISSING else json.dumps(v))
def test_gc_with_a_missing_or_malformed_list_is_invalid_config_and_releases_nothing(
        node: Node, netns: NetnsFactory, attachments: Any) -> None:
    pods, confs = _two_pods(node, netns)
    records = sorted(r.to_json() for r in node.ctx.store.records(pending=True))
    raw, code = _gc(node, attachments)
    assert code == 1
    error = json.loads(raw)
    assert error["code"] == ErrorCode.INVALID_CONFIG, error
    assert "valid-attachments" in error["msg"] + error.get("details", "") and "Traceback" not in raw.decode()
    assert all(pod_link(pod, "net1") is not None for pod in pods), "GC moved a VF out of a pod"
    assert [node.ctx.netlink.vf_settings(node.pf, i).vlan for i in range(2)] == [40, 41]
    assert sorted(r.to_json() for r in node.ctx.store.records(pending=True)) == records
    _del_all(node, pods, confs)


def test_a_malformed_legacy_list_next_to_a_good_one_releases_nothing(node: Node, netns: NetnsFactory) -> None:
    pods, confs = _two_pods(node, netns)
    raw, code = _gc(node, [GOOD], **{"cni.dev/attachments": [{"containerID": 5}]})
    assert code == 1 and json.loads(raw)["code"] == ErrorCode.INVALID_CONFIG
    assert all(pod_link(pod, "net1") is not None for pod in pods)
    _del_all(node, pods, confs)


def test_an_empty_list_releases_every_attachment_of_the_network(node: Node, netns: NetnsFactory) -> None:
    pods, _ = _two_pods(node, netns)
    assert _gc(node, []) == (b"", 0)
    assert all(pod_link(pod, "net1") is None for pod in pods)
    assert node.ctx.store.records(pending=True) == []


def test_keys_match_as_go_matches_them_and_the_legacy_name_counts(node: Node, netns: NetnsFactory) -> None:
    """Go's encoding/json: exact key first, else case-insensitive; unknown keys ignored. libcni sends
    the list under both names; an attachment listed under either is kept."""
    pods, confs = _two_pods(node, netns)
    keep0 = {"ContainerId": "pod0", "IFNAME": "net1", "podName": "ignored"}
    assert _gc(node, [keep0], **{"cni.dev/attachments": [{"containerID": "pod1", "ifname": "net1"}]}) == (b"", 0)
    assert all(pod_link(pod, "net1") is not None for pod in pods)
    conf = {"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov",
            "CNI.DEV/VALID-ATTACHMENTS": [{"containerID": "pod1", "ifname": "net1"}]}
    raw, code = run_cni({"CNI_COMMAND": "GC", "CNI_PATH": "/usr/lib/cni"}, json.dumps(conf).encode(), node.ctx)
    assert (raw, code) == (b"", 0)
    assert pod_link(pods[0], "net1") is None and pod_link(pods[1], "net1") is not None
    assert node.run("DEL", confs[1], pods[1], CNI_CONTAINERID="pod1")[1] == 0
