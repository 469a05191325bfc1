"""The I/O parts' own logic, without root: CNI execution with script plugins, the record store,
the informer's list/watch/relist cycle, the runtime's verbose info, mountinfo, Event bodies."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.hotplug import cniexec
from sriovkit.hotplug.cniexec import CniCall, CniExecError, CniRuntime, PluginNotFound
from sriovkit.hotplug.cri import CriError, netns_path
from sriovkit.hotplug.kube import Expired, Informer, event_body
from sriovkit.hotplug.record import PodRecord, RecordStore
from sriovkit.hotplug.vhostuser import VhostUserDirs, mount_points, wants_vhostuser

PLUGIN = """#!/bin/sh
# records its call, answers with a result naming itself
input=$(cat)
printf '%s %s %s %s\\n' "$0" "$CNI_COMMAND" "$CNI_IFNAME" "$input" >> "{log}"
[ "$CNI_COMMAND" = ADD ] || exit 0
if [ -e "{fail}" ]; then
  echo '{{"code": 7, "msg": "no luck", "details": "try later"}}'
  exit 1
fi
iface='{{"name": "'$CNI_IFNAME'", "sandbox": "'$CNI_NETNS'"}}'
echo '{{"cniVersion": "1.0.0", "interfaces": ['"$iface"'], "ips": [], "by": "'$(basename $0)'"}}'

"""


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("first", "second"):
        (d / name).write_text(PLUGIN.format(log=tmp_path / "calls", fail=tmp_path / "fail"))
        (d / name).chmod(0o755)
    return d


CALL = CniCall("cid", "/var/run/netns/x", "net1", "ns1", "vm", "uid-1")
CONFIG = {"cniVersion": "1.0.0", "name": "chain", "plugins": [{"type": "first"}, {"type": "second", "k": 1}]}


def calls(tmp_path: Path) -> list[tuple[str, str, dict]]:
    out = []
    for line in (tmp_path / "calls").read_text().splitlines():
        path, command, _ifname, stdin = line.split(" ", 3)
        out.append((Path(path).name, command, json.loads(stdin)))
    return out


def test_chain_add_passes_prev_result_and_del_runs_in_reverse(bin_dir: Path, tmp_path: Path):
    runtime = CniRuntime((str(bin_dir),))
    result = cniexec.add(runtime, CONFIG, CALL)
    assert result["by"] == "second"
    cniexec.delete(runtime, CONFIG, CALL, result)
    seen = calls(tmp_path)
    assert [(p, c) for p, c, _ in seen] == [("first", "ADD"), ("second", "ADD"), ("second", "DEL"), ("first", "DEL")]
    assert "prevResult" not in seen[0][2] and seen[1][2]["prevResult"]["by"] == "first"
    assert seen[1][2] == {"cniVersion": "1.0.0", "name": "chain", "type": "second", "k": 1,
                          "prevResult": seen[1][2]["prevResult"]}
    assert seen[2][2]["prevResult"] == result


def test_plugin_error_message_is_the_plugins_own(bin_dir: Path, tmp_path: Path):
    (tmp_path / "fail").touch()
    with pytest.raises(CniExecError, match=r"^first ADD net1: no luck: try later \(code 7\)$"):
        cniexec.add(CniRuntime((str(bin_dir),)), CONFIG, CALL)


def test_missing_plugin_stops_the_chain_before_anything_runs(bin_dir: Path, tmp_path: Path):
    config = {**CONFIG, "plugins": [{"type": "first"}, {"type": "absent"}]}
    with pytest.raises(PluginNotFound, match="CNI plugin 'absent' not found in"):
        cniexec.add(CniRuntime((str(bin_dir),)), config, CALL)
    assert not (tmp_path / "calls").exists()


def test_environment_is_the_standard_cni_one(tmp_path: Path):
    d = tmp_path / "bin"
    d.mkdir()
    (d / "envdump").write_text(f"#!/bin/sh\nenv > {tmp_path}/env\necho '{{}}'\n")
    (d / "envdump").chmod(0o755)
    cniexec.add(CniRuntime((str(d), "/other"), extra_env={"SRIOVKIT_HOST_ROOT": "/sim"}),
                {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "envdump"}]}, CALL)
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert env["CNI_COMMAND"] == "ADD" and env["CNI_CONTAINERID"] == "cid" and env["CNI_IFNAME"] == "net1"
    assert env["CNI_NETNS"] == "/var/run/netns/x" and env["CNI_PATH"] == f"{d}:/other"
    assert env["CNI_ARGS"] == CALL.cni_args() and env["SRIOVKIT_HOST_ROOT"] == "/sim"


def test_record_store_round_trip(tmp_path: Path):
    store = RecordStore(tmp_path)
    record = PodRecord(uid="u1", namespace="ns1", name="vm", sandbox_id="s", netns="/n")
    store.save(record)  # empty: nothing to remember
    assert store.uids() == []
    record.put({"network": "ns1/a", "interface": "net1", "state": "attached"})
    record.mounts = [{"source": "/a", "target": "/b"}]
    store.save(record)
    loaded = store.load("u1")
    assert loaded is not None and loaded.attachment("net1") == {"network": "ns1/a", "interface": "net1",
                                                                "state": "attached"}
    assert (loaded.pod, loaded.netns, loaded.mounts, store.uids()) == ("ns1/vm", "/n", record.mounts, ["u1"])
    store.remove("u1")
    assert store.load("u1") is None and store.uids() == []
    with pytest.raises(ValueError, match="cannot name a record file"):
        store.path("../etc")


def pod(name: str, rv: int) -> dict:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": str(rv)}}


def test_informer_lists_watches_and_lists_again_after_expiry():
    lists = iter([([pod("a", 1), pod("b", 1)], "10"), ([pod("a", 3), pod("c", 4)], "20")])
    watches: list[str] = []
    changes: list[tuple[str, str | None]] = []
    done = threading.Event()

    def watch(version: str, timeout: int) -> Iterator[tuple[str, dict]]:
        watches.append(version)
        if len(watches) == 1:
            yield "MODIFIED", pod("b", 11)
            yield "BOOKMARK", {"metadata": {"resourceVersion": "12"}}
        elif len(watches) == 2:  # resumes from the bookmark
            raise Expired("too old")
        else:
            done.set()
            yield from ()

    informer = Informer("pods", lambda: next(lists), watch,
                        lambda key, obj: changes.append((key, obj and obj["metadata"]["resourceVersion"])),
                        retry_s=0.01)
    informer.start()
    assert done.wait(5)
    informer.request_stop()
    informer.join()
    assert watches[:3] == ["10", "12", "20"]
    assert changes == [("ns/a", "1"), ("ns/b", "1"), ("ns/b", "11"), ("ns/b", None), ("ns/a", "3"), ("ns/c", "4")]
    assert sorted(informer.known()) == ["ns/a", "ns/c"] and informer.synced.is_set()


def test_netns_from_the_runtimes_verbose_info():
    spec = {"runtimeSpec": {"linux": {"namespaces": [{"type": "pid"},
                                                     {"type": "network", "path": "/var/run/netns/cni-1"}]}}}
    assert netns_path({"info": json.dumps(spec)}, pod="ns/p") == "/var/run/netns/cni-1"
    assert netns_path({"info": json.dumps({"runtimeSpec": {"linux": {"namespaces": []}}})}, pod="ns/p") == ""
    with pytest.raises(CriError, match="pod ns/p: the runtime's sandbox status has no verbose info"):
        netns_path({}, pod="ns/p")
    with pytest.raises(CriError, match="not JSON"):
        netns_path({"info": "{"}, pod="ns/p")


def test_mountinfo_paths_are_unescaped(tmp_path: Path):
    info = tmp_path / "mountinfo"
    info.write_text("36 35 98:0 / /mnt/with\\040space rw - ext3 /dev/root rw\n"
                    "37 35 98:0 / /plain rw - ext3 /dev/root rw\n")
    assert mount_points(info) == ["/mnt/with space", "/plain"]


def test_vhostuser_volume_and_paths():
    assert wants_vhostuser({"spec": {"volumes": [{"name": "vhostuser-sockets", "emptyDir": {}}]}})
    assert not wants_vhostuser({"spec": {"volumes": [{"name": "vhostuser-sockets", "hostPath": {"path": "/x"}}]}})
    assert not wants_vhostuser({"spec": {}})
    dirs = VhostUserDirs(Path("/k"), Path("/o"))
    assert str(dirs.source("u")) == "/k/pods/u/volumes/kubernetes.io~empty-dir/vhostuser-sockets"
    assert str(dirs.target("u")) == "/o/vhost_sockets/u/vhostuser-sockets"


def test_event_names_the_pod_and_the_reporter():
    body = event_body({"metadata": {"namespace": "ns1", "name": "vm", "uid": "u1"}}, "Warning", "HotplugFailed",
                      "x" * 2000, "node-a")
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "ns1", "name": "vm", "uid": "u1"}
    assert (body["type"], body["reason"], len(body["message"])) == ("Warning", "HotplugFailed", 1024)
    assert body["source"] == {"component": "sriovkit-hotplug", "host": "node-a"}
    assert body["metadata"] == {"generateName": "vm.", "namespace": "ns1"}
