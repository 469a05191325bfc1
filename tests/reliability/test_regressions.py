"""One test per product bug the reliability suite found (each failed before its fix)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sriovkit.cni.spec import ErrorCode
from tests.reliability import scenarios
from tests.support.cni_host import Node
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


def test_del_right_after_the_pod_namespace_is_deleted_waits_for_the_vf(node: Node, netns: NetnsFactory) -> None:
    """Namespace teardown is asynchronous: the VF is in neither namespace for a while. DEL used to
    succeed then, forgetting a VF that came back later under the pod's name, MAC and MTU."""
    pod = netns()
    conf = node.conf(1, mac="02:00:00:00:31:01", mtu=1400, link_state="disable", vlan=31)
    assert node.run("ADD", conf, pod)[1] == 0
    subprocess.run(["ip", "netns", "delete", os.path.basename(pod)], check=True)
    assert node.run("DEL", conf, pod) == (None, 0)
    assert node.ctx.netlink.device_netdev(node.vf(1)) == node.vf_netdev(1)
    # the fixture checks name, MAC, MTU, switch settings, records and locks


def test_keys_that_collide_never_release_the_other_attachments_vf(node: Node, netns: NetnsFactory) -> None:
    """container "a-b" + ifname "c" and container "a" + ifname "b-c" share the file name a-b-c.json:
    the second's DEL used to release the first's VF, its ADD to be told "already exists"."""
    pod = netns()
    conf = node.conf(0, vlan=7)
    assert node.run("ADD", conf, pod, CNI_CONTAINERID="a-b", CNI_IFNAME="c")[1] == 0
    assert node.run("DEL", node.conf(0), pod, CNI_CONTAINERID="a", CNI_IFNAME="b-c") == (None, 0)
    assert pod_link(pod, "c") is not None and node.ctx.netlink.vf_settings(node.pf, 0).vlan == 7
    out, code = node.run("ADD", node.conf(1), pod, CNI_CONTAINERID="a", CNI_IFNAME="b-c")
    assert code == 1 and out["code"] == ErrorCode.DEVICE_UNUSABLE and "another attachment" in out["details"]
    assert node.run("DEL", conf, pod, CNI_CONTAINERID="a-b", CNI_IFNAME="c") == (None, 0)


def test_a_temp_file_left_by_a_killed_write_is_removed_by_del(node: Node, netns: NetnsFactory) -> None:
    """A write killed between create and rename used to leave .tmp-* files for ever."""
    pod = netns()
    conf = node.conf(2)
    assert node.run("ADD", conf, pod)[1] == 0
    stale = node.state_dir / f".tmp-c1-net1+{node.vf(2)}.json"
    stale.write_text('{"half": ')
    assert node.run("DEL", conf, pod) == (None, 0)
    assert not stale.exists()


def test_a_hard_link_planted_at_the_temp_name_is_not_written_through(node: Node, netns: NetnsFactory) -> None:
    victim = node.tmp / "victim"
    victim.write_text("keep")
    node.state_dir.mkdir(mode=0o700, exist_ok=True)
    os.link(victim, node.state_dir / f".tmp-c1-net1+{node.vf(3)}.pending")
    pod = netns()
    assert node.run("ADD", node.conf(3), pod)[1] == 0
    assert victim.read_text() == "keep"
    assert node.run("DEL", node.conf(3), pod) == (None, 0)


@pytest.mark.parametrize("kind", ["nul", "fifo", "symlink", "directory", "relative"])
def test_a_log_file_that_is_not_a_plain_file_is_ignored_not_fatal(node: Node, netns: NetnsFactory, tmp_path: Path,
                                                                  kind: str) -> None:
    """logFile comes from the NAD. A NUL in it used to turn a finished ADD into the internal error
    (the VF stayed attached), a FIFO used to hang the plugin for ever holding the VF's lock, and
    a symlink was followed (the plugin runs as root)."""
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(victim, tmp_path / "link")
    path = {"nul": "/tmp/a\0b", "fifo": str(tmp_path / "fifo"), "symlink": str(tmp_path / "link"),
            "directory": str(tmp_path), "relative": "sriov.log"}[kind]
    pod = netns()
    conf = node.conf(0, logFile=path)
    env = scenarios.process_env(node, node.env("ADD", pod))
    out, code = scenarios.execute(scenarios.PLUGIN, env, conf, timeout=60)
    assert code == 0, out
    assert victim.read_text() == "keep"
    assert node.run("DEL", conf, pod) == (None, 0)


def test_a_regular_log_file_still_gets_the_events(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    log = tmp_path / "sriov.log"
    pod = netns()
    conf = node.conf(1, logFile=str(log))
    assert node.run("ADD", conf, pod)[1] == 0
    assert node.run("DEL", conf, pod) == (None, 0)
    text = log.read_text()
    assert "event=attached" in text and "event=detached" in text
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_del_that_overtakes_its_own_add_waits_for_it(node: Node, netns: NetnsFactory) -> None:
    """The runtime gives up on a slow ADD (its shim is killed, the agent carries on) and sends
    DEL. If that DEL came while the ADD was still waiting for the VF, it found nothing to undo
    and answered success; the ADD then attached the VF to a pod the runtime had forgotten."""
    import threading

    pod = netns()
    conf = node.conf(2, vlan=12)
    answers: dict[str, tuple[object, int]] = {}
    with node.ctx.store.lock(node.vf(2), 10):  # another operation holds the VF for a while
        add = threading.Thread(target=lambda: answers.setdefault("ADD", node.run("ADD", conf, pod)))
        add.start()
        time.sleep(0.3)  # the ADD is now waiting for the VF's lock
        delete = threading.Thread(target=lambda: answers.setdefault("DEL", node.run("DEL", conf, pod)))
        delete.start()
        delete.join(0.5)
        overtaken = "DEL" in answers
    add.join(30)
    delete.join(30)
    assert not overtaken, "DEL answered while its ADD was still in progress"
    assert answers["ADD"][1] == 0 and answers["DEL"] == (None, 0)
    assert node.ctx.netlink.device_netdev(node.vf(2)) == node.vf_netdev(2)  # given back by the DEL


@pytest.mark.parametrize("native", [False, True], ids=["python-shim", "native-shim"])
def test_a_fallback_that_cannot_start_is_an_error_json_not_a_traceback(node: Node, tmp_path: Path,
                                                                        native: bool) -> None:
    from sriovkit.shim.install import ShimSettings, install_shim

    (tmp_path / "bin").mkdir()
    shim = install_shim(tmp_path / "bin", ShimSettings(agent_socket=str(tmp_path / "none.sock"),
                                                       fallback_python=str(tmp_path / "no-python"),
                                                       interpreter=sys.executable, native=native))
    env = scenarios.process_env(node, node.env("DEL", ""))
    proc = subprocess.run([str(shim)], input=b'{"cniVersion": "0.4.0"}', env=env, capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    error = json.loads(proc.stdout)
    assert error["code"] == 11 and error["cniVersion"] == "0.4.0" and "no in-process fallback" in error["msg"]
    assert str(tmp_path / "no-python") in error["details"] and str(tmp_path / "none.sock") in error["msg"]
