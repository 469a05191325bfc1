"""Paths a caller chooses (issue 13 class 2): `runtimeConfig.CNIDeviceInfoFile` is written only
inside the node's device-info directory, created exclusively, never through a symlink, removed
only if this plugin created it; anything else is INVALID_CONFIG before any change. `logFile` is
appended to only inside the node's log directory; elsewhere it is not written and the call goes on."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sriovkit.cni.spec import ErrorCode
from tests.support.cni_host import Node
from tests.support.kernel import pod_link
from tests.support.names import NetnsFactory

pytestmark = pytest.mark.root


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    if not victim.exists():
        victim.write_text("keep")
        victim.chmod(0o600)
    return victim


# each: (node, tmp_path) -> the path to pass; set-up (symlinks, FIFOs...) done by the builder
HOSTILE: dict[str, Callable[[Node, Path], str]] = {
    "outside, an existing 0600 file": lambda n, t: str(_victim(t)),
    "outside, missing directories": lambda n, t: str(t / "newdir" / "deeper" / "x.json"),
    "/etc": lambda n, t: f"/etc/sriovkit-test-{secrets.token_hex(4)}.json",
    "/proc": lambda n, t: "/proc/self/attr/current",
    "/dev/null": lambda n, t: "/dev/null",
    "relative": lambda n, t: "cni/x.json",
    "relative dot": lambda n, t: "./x.json",
    "dot-dot out of the dir": lambda n, t: f"{n.devinfo_dir}/../escape.json",
    "dot-dot inside the dir": lambda n, t: f"{n.devinfo_dir}/cni/../x.json",
    "dot component": lambda n, t: f"{n.devinfo_dir}/./x.json",
    "the dir itself": lambda n, t: str(n.devinfo_dir),
    "a sibling sharing the prefix": lambda n, t: f"{n.devinfo_dir}-evil/x.json",
    "a symlinked directory inside": lambda n, t: _symlinked_dir(n, t),
    "a symlink as the file": lambda n, t: _symlinked_file(n, t),
    "a dangling symlink as the file": lambda n, t: _dangling(n, t),
    "a directory as the file": lambda n, t: _made(n, "adir", os.mkdir),
    "a FIFO as the file": lambda n, t: _made(n, "afifo", os.mkfifo),
    "a NUL byte": lambda n, t: f"{n.devinfo_dir}/x\0.json",
}


def _made(node: Node, name: str, make: Callable[[Path], object]) -> str:
    node.devinfo_dir.mkdir(exist_ok=True)
    make(node.devinfo_dir / name)
    return str(node.devinfo_dir / name)


def _symlinked_dir(node: Node, tmp_path: Path) -> str:
    (tmp_path / "outside").mkdir(exist_ok=True)
    node.devinfo_dir.mkdir(exist_ok=True)
    (node.devinfo_dir / "cni").symlink_to(tmp_path / "outside")
    return str(node.devinfo_dir / "cni" / "x.json")


def _symlinked_file(node: Node, tmp_path: Path) -> str:
    node.devinfo_dir.mkdir(exist_ok=True)
    (node.devinfo_dir / "x.json").symlink_to(_victim(tmp_path))
    return str(node.devinfo_dir / "x.json")


def _dangling(node: Node, tmp_path: Path) -> str:
    node.devinfo_dir.mkdir(exist_ok=True)
    (node.devinfo_dir / "x.json").symlink_to(tmp_path / "would-be-created")
    return str(node.devinfo_dir / "x.json")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its mode and size (what must not change), the plugin's own
    state directory (its locks) aside."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not (dirpath == str(root) and d.startswith("state"))]
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_mode, st.st_size)
    return out


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_device_info_path_is_refused_before_any_change(node: Node, netns: NetnsFactory,
                                                                 tmp_path: Path, case: str) -> None:
    path = HOSTILE[case](node, tmp_path)
    victim = _victim(tmp_path)
    before = _snapshot(tmp_path)
    pod = netns()
    conf = node.conf(0, vlan=7, ipam=node.host_local(), runtimeConfig={"CNIDeviceInfoFile": path})
    out, code = node.run("ADD", conf, pod)
    assert code == 1 and out["code"] == ErrorCode.INVALID_CONFIG, out
    assert "CNIDeviceInfoFile" in out["msg"] + out.get("details", "") and "\n" not in out["msg"]
    assert pod_link(pod, "net1") is None
    assert node.ctx.netlink.vf_settings(node.pf, 0).vlan == 0
    assert victim.read_text() == "keep" and victim.stat().st_mode & 0o777 == 0o600
    assert _snapshot(tmp_path) == before, "a file or directory was created, changed or removed"
    assert node.run("DEL", conf, pod) == (None, 0)  # nothing attached: DEL succeeds, touches nothing
    assert victim.read_text() == "keep"


def test_the_file_is_created_whole_and_removed_by_del(node: Node, netns: NetnsFactory) -> None:
    path = node.devinfo_dir / "cni" / "sriov-net-c1_net1"
    pod = netns()
    conf = node.conf(1, runtimeConfig={"CNIDeviceInfoFile": str(path)})
    assert node.run("ADD", conf, pod)[1] == 0
    assert path.is_file() and os.listdir(path.parent) == [path.name]  # no temporary file left
    assert node.run("DEL", conf, pod) == (None, 0)
    assert not path.exists()


@pytest.mark.parametrize("swap", ["another file", "a symlink to a victim", "a hard link to a victim"])
def test_del_removes_only_the_file_it_created(node: Node, netns: NetnsFactory, tmp_path: Path, swap: str) -> None:
    path = node.devinfo_dir / "x.json"
    pod = netns()
    conf = node.conf(2, runtimeConfig={"CNIDeviceInfoFile": str(path)})
    assert node.run("ADD", conf, pod)[1] == 0
    victim = _victim(tmp_path)
    path.unlink()
    {"another file": lambda: path.write_text("someone else's"),
     "a symlink to a victim": lambda: path.symlink_to(victim),
     "a hard link to a victim": lambda: os.link(victim, path)}[swap]()
    assert node.run("DEL", conf, pod) == (None, 0)
    assert os.path.lexists(path), "DEL removed a file it did not create"
    assert victim.read_text() == "keep"


LOG_HOSTILE: dict[str, Callable[[Node, Path], str]] = {
    "outside the log dir": lambda n, t: f"/tmp/sriovkit-log-{secrets.token_hex(4)}.log",
    "/etc": lambda n, t: f"/etc/sriovkit-log-{secrets.token_hex(4)}",
    "dot-dot out of the log dir": lambda n, t: f"{t}/../sriovkit-{secrets.token_hex(4)}.log",
    "a symlink to a victim": lambda n, t: _log_link(t, os.symlink),
    "a hard link to a victim": lambda n, t: _log_link(t, os.link),
    "a symlinked directory": lambda n, t: _log_dir_link(t),
}


def _log_link(tmp_path: Path, link: Callable[[Any, Any], None]) -> str:
    link(_victim(tmp_path), tmp_path / "sriov.log")
    return str(tmp_path / "sriov.log")


def _log_dir_link(tmp_path: Path) -> str:
    (tmp_path / "logs-elsewhere").mkdir()
    (tmp_path / "logs").symlink_to(tmp_path / "logs-elsewhere")
    return str(tmp_path / "logs" / "sriov.log")


@pytest.mark.parametrize("case", list(LOG_HOSTILE))
def test_a_hostile_log_file_is_not_written_and_the_call_goes_on(node: Node, netns: NetnsFactory,
                                                                tmp_path: Path, case: str) -> None:
    path = LOG_HOSTILE[case](node, tmp_path)
    victim = _victim(tmp_path)
    pod = netns()
    conf = node.conf(3, logFile=path, logLevel="debug")
    result, code = node.run("ADD", conf, pod)
    assert code == 0, result
    assert node.run("DEL", conf, pod) == (None, 0)
    assert victim.read_text() == "keep"
    if case != "a symlinked directory":
        assert not os.path.exists(path) or os.path.samefile(path, victim)
    assert list((tmp_path / "logs-elsewhere").iterdir() if (tmp_path / "logs-elsewhere").exists() else []) == []


def test_a_log_file_inside_the_log_dir_gets_the_events(node: Node, netns: NetnsFactory, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "sriov.log"
    path.parent.mkdir()
    pod = netns()
    conf = node.conf(3, logFile=str(path))
    assert node.run("ADD", conf, pod)[1] == 0
    assert node.run("DEL", conf, pod) == (None, 0)
    assert "event=attached" in path.read_text() and "event=detached" in path.read_text()
