"""VERSION, CHECK, STATUS and GC."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from sriovkit.cni.context import CniContext
from sriovkit.cni.plugin import run_cni
from sriovkit.cni.spec import SUPPORTED_VERSIONS, ErrorCode
from tests.support.cni_host import Node
from tests.support.ipam import ipam_allocations
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


def test_version(node: Node) -> None:
    out, code = run_cni({"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"0.4.0"}', node.ctx)
    assert code == 0
    assert json.loads(out) == {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert json.loads(run_cni({"CNI_COMMAND": "VERSION"}, b"", node.ctx)[0])["cniVersion"] == "1.1.0"


def test_unsupported_version_and_missing_command(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    out, code = node.run("ADD", node.conf(0, version="0.2.0"), pod)
    assert code == 1 and out["code"] == ErrorCode.INCOMPATIBLE_VERSION and out["cniVersion"] == "0.2.0"
    raw, code = run_cni({}, json.dumps(node.conf(0)).encode(), node.ctx)
    assert code == 1 and json.loads(raw)["code"] == ErrorCode.INVALID_ENV
    raw, code = run_cni(node.env("ADD", pod), b"{not json", node.ctx)
    assert code == 1 and json.loads(raw)["code"] == ErrorCode.DECODE_FAILURE


def _check(node: Node, pod: str, result: dict[str, object], **conf: object) -> tuple[dict[str, object] | None, int]:
    return node.run("CHECK", {**node.conf(1, **conf), "prevResult": result}, pod)


def test_check_passes_then_reports_drift(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    settings = {"vlan": 12, "trust": "on", "mac": "02:00:00:00:0c:0c", "mtu": 1400, "ipam": node.host_local()}
    result, code = node.run("ADD", node.conf(1, **settings), pod)
    assert code == 0
    assert _check(node, pod, result, **settings) == (None, 0)

    node.ctx.netlink.set_vf_trust(node.pf, 1, False)
    subprocess.run(["ip", "-n", os.path.basename(pod), "addr", "flush", "dev", "net1"], check=True)
    out, code = _check(node, pod, result, **settings)
    assert code == 1 and out is not None and out["code"] == ErrorCode.CHECK_FAILED
    assert "trust is off" in str(out["details"]) and "lacks address" in str(out["details"])
    node.ctx.netlink.set_vf_trust(node.pf, 1, True)
    assert node.run("DEL", node.conf(1, **settings), pod)[1] == 0


def test_check_needs_prev_result_a_new_enough_version_and_an_attachment(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    out, code = node.run("CHECK", node.conf(1), pod)
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG
    out, code = node.run("CHECK", {**node.conf(1, version="0.3.1"), "prevResult": {}}, pod)
    assert code == 1 and out["code"] == ErrorCode.INCOMPATIBLE_VERSION
    out, code = node.run("CHECK", {**node.conf(1), "prevResult": {"cniVersion": "1.0.0"}}, pod)
    assert code == 1 and out["code"] == ErrorCode.CHECK_FAILED and "no attachment" in out["msg"]


def test_status(node: Node, tmp_path: Path) -> None:
    conf = {"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov", "ipam": node.host_local()}
    raw, code = run_cni({"CNI_COMMAND": "STATUS", "CNI_PATH": "/usr/lib/cni"}, json.dumps(conf).encode(), node.ctx)
    assert (raw, code) == (b"", 0)
    raw, code = run_cni({"CNI_COMMAND": "STATUS"}, json.dumps({**conf, "cniVersion": "1.0.0"}).encode(), node.ctx)
    assert code == 1 and json.loads(raw)["code"] == ErrorCode.INCOMPATIBLE_VERSION
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    broken = CniContext(sysfs=node.ctx.sysfs, netlink=node.ctx.netlink, state_dir=str(blocked / "state"))
    raw, code = run_cni({"CNI_COMMAND": "STATUS"}, json.dumps(conf).encode(), broken)
    assert code == 1 and json.loads(raw)["code"] == ErrorCode.NOT_AVAILABLE


def test_gc_releases_only_attachments_missing_from_the_valid_list(node: Node, netns: NetnsFactory) -> None:
    pods = [netns(), netns(), netns()]
    confs = [node.conf(i, version="1.1.0", vlan=20 + i, ipam=node.host_local()) for i in range(3)]
    for i, (pod, conf) in enumerate(zip(pods, confs, strict=True)):
        assert node.run("ADD", conf, pod, CNI_CONTAINERID=f"pod{i}")[1] == 0
    other_net = {**node.conf(3, version="1.1.0"), "name": "other-net"}
    assert node.run("ADD", other_net, pods[0], CNI_CONTAINERID="pod0", CNI_IFNAME="net2")[1] == 0
    assert len(ipam_allocations(node.ipam_dir)) == 3

    gc = {"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov", "ipam": node.host_local(),
          "cni.dev/valid-attachments": [{"containerID": "pod1", "ifname": "net1"}]}
    raw, code = run_cni({"CNI_COMMAND": "GC", "CNI_PATH": "/usr/lib/cni"}, json.dumps(gc).encode(), node.ctx)
    assert (raw, code) == (b"", 0)
    assert pod_link(pods[0], "net1") is None and pod_link(pods[2], "net1") is None
    assert pod_link(pods[1], "net1") is not None
    assert pod_link(pods[0], "net2") is not None  # another network's attachment is not ours to collect
    assert node.ctx.netlink.vf_settings(node.pf, 0).vlan == 0
    assert len(ipam_allocations(node.ipam_dir)) == 1
    assert node.run("DEL", confs[1], pods[1], CNI_CONTAINERID="pod1")[1] == 0
    assert node.run("DEL", other_net, pods[0], CNI_CONTAINERID="pod0", CNI_IFNAME="net2")[1] == 0


def test_host_local_without_1_1_0_still_serves_a_1_1_0_config(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    conf = node.conf(2, version="1.1.0", ipam=node.host_local("10.66.0.0/24"))
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert result["cniVersion"] == "1.1.0" and result["ips"][0]["address"].startswith("10.66.0.")
    assert node.run("DEL", conf, pod)[1] == 0


def test_gc_leaves_an_add_that_completes_while_gc_waits(node: Node, netns: NetnsFactory) -> None:
    """GC lists an in-progress ADD's journal; by the time it holds the VF's lock the ADD is complete."""
    import dataclasses
    import threading

    from sriovkit.cni.env import CniEnv
    from sriovkit.cni.log import EventLog
    from sriovkit.cni.netconf import parse_netconf
    from sriovkit.cni.release import release
    from sriovkit.cni.steps import Call

    pod = netns()
    conf = node.conf(1, version="1.1.0", vlan=31)
    assert node.run("ADD", conf, pod)[1] == 0
    done = node.ctx.store.load("c1", "net1")
    assert done is not None
    journal = dataclasses.replace(done, complete=False)  # what GC saw while the ADD was still running
    call = Call(node.ctx, CniEnv(command="GC", path=("/usr/lib/cni",)), parse_netconf(conf, need_device=False),
                EventLog(command="GC"))
    with node.ctx.store.lock(node.vf(1), 5):
        worker = threading.Thread(target=release, args=(call, journal), kwargs={"only_if_unchanged": True})
        worker.start()
    worker.join(10)
    assert pod_link(pod, "net1") is not None  # the completed attachment survived
    assert node.run("DEL", conf, pod)[1] == 0


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_status_and_gc_are_delegated_to_an_ipam_that_speaks_1_1_0(node: Node, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _script(tmp_path / "new-ipam", f"""cat >/dev/null
echo "$CNI_COMMAND" >> {calls}
case "$CNI_COMMAND" in
  VERSION) echo '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}' ;;
  STATUS) echo '{{"cniVersion":"1.1.0","code":50,"msg":"pool offline"}}'; exit 1 ;;
esac
""")
    conf = {"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov", "ipam": {"type": "new-ipam"},
            "cni.dev/valid-attachments": []}
    env = {"CNI_PATH": str(tmp_path)}
    raw, code = run_cni({**env, "CNI_COMMAND": "STATUS"}, json.dumps(conf).encode(), node.ctx)
    assert code == 1 and json.loads(raw)["code"] == ErrorCode.NOT_AVAILABLE and "pool offline" in json.loads(raw)["msg"]
    assert run_cni({**env, "CNI_COMMAND": "GC"}, json.dumps(conf).encode(), node.ctx) == (b"", 0)
    assert calls.read_text().split() == ["VERSION", "STATUS", "VERSION", "GC"]


def test_a_failed_del_keeps_the_record_and_the_next_del_finishes(node: Node, netns: NetnsFactory,
                                                                 tmp_path: Path) -> None:
    fail = tmp_path / "fail-del"
    fail.write_text("")
    _script(tmp_path / "flaky-ipam", f"""if [ "$CNI_COMMAND" = DEL ] && [ -e {fail} ]; then
  cat >/dev/null; echo '{{"cniVersion":"1.0.0","code":11,"msg":"datastore down"}}'; exit 1
fi
exec /usr/lib/cni/host-local
""")
    node.cni_path = f"{tmp_path}:/usr/lib/cni"
    pod = netns()
    conf = node.conf(0, vlan=8, mac="02:00:00:00:08:08", ipam={**node.host_local(), "type": "flaky-ipam"})
    assert node.run("ADD", conf, pod)[1] == 0
    out, code = node.run("DEL", conf, pod)
    assert code == 1 and out["code"] == 11 and "DEL step" in out["msg"]
    assert node.ctx.store.load("c1", "net1") is not None  # kept, so the runtime's retry can finish
    assert pod_link(pod, "net1") is not None
    fail.unlink()
    assert node.run("DEL", conf, pod) == (None, 0)


def test_add_twice_for_one_attachment_is_refused(node: Node, netns: NetnsFactory) -> None:
    pod = netns()
    assert node.run("ADD", node.conf(0), pod)[1] == 0
    out, code = node.run("ADD", node.conf(1), pod)
    assert code == 1 and out["code"] == ErrorCode.DEVICE_UNUSABLE and "already exists" in out["msg"]
    assert node.run("DEL", node.conf(0), pod) == (None, 0)
