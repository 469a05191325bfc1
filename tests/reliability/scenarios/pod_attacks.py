"""Issue 13 classes 1-3 as report rows: a pod with NET_ADMIN against DEL (renames, decoys, a VF
deleted or hidden), hostile caller paths (device-info file, logFile), malformed GC lists. Each
case runs through the shim and agent or the standalone plugin (alternately) on a veth-backed
simulated node; a case fails on a wrong answer, leaks when the host gains a pod's link or a VF
is not given back."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sriovkit.cni.plugin import run_cni
from tests.reliability.scenarios.rig import (
    PLUGIN,
    AgentProcess,
    Outcome,
    PodFactory,
    answer,
    execute,
    pods,
    process_env,
    shim_for,
    sim_node,
)
from tests.support.cni_host import Node
from tests.support.kernel import ip, ip_json
from tests.support.leaks import leak_report

# what the pod does between ADD and DEL; returns the MACs of links it made itself
PodMove = Callable[[Node, str, PodFactory], set[str]]


def _decoy(netns: str, name: str) -> set[str]:
    ip("link", "add", name, "type", "veth", "peer", "name", f"pd{secrets.token_hex(3)}", netns=netns)
    return {ip_json("link", "show", name, netns=netns)[0]["address"]}


def _rename(netns: str, new: str) -> None:
    ip("link", "set", "net1", "down", netns=netns)
    ip("link", "set", "net1", "name", new, netns=netns)


def _rename_and_decoy(vf_name: str, decoy_name: str) -> PodMove:
    def move(node: Node, pod: str, make_pod: PodFactory) -> set[str]:
        names = {"HOST": node.vf_netdev(0), "OTHER": node.vf_netdev(1)}
        _rename(pod, names.get(vf_name, vf_name))
        return _decoy(pod, names.get(decoy_name, decoy_name)) if decoy_name else set()
    return move


def _delete_and_recreate(node: Node, pod: str, make_pod: PodFactory) -> set[str]:
    ip("link", "del", "net1", netns=pod)
    return _decoy(pod, "net1")


ATTACKS: dict[str, PodMove] = {
    "VF renamed, decoy named net1": _rename_and_decoy("realvf", "net1"),
    "VF renamed only": _rename_and_decoy("eth9", ""),
    "VF under its host name, decoy net1": _rename_and_decoy("HOST", "net1"),
    "decoy under the VF's host name": _rename_and_decoy("x1", "HOST"),
    "VF under another VF's host name": _rename_and_decoy("OTHER", "net1"),
    "VF deleted, net1 recreated": _delete_and_recreate,
}


def pod_renames(tmp: Path) -> Outcome:
    out = Outcome("hostile pod: VF renamed / decoys / deleted / hidden, DEL via agent or plugin")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        socket_path = tmp / "agent" / "cni.sock"
        shim = shim_for(node, tmp / "bin", socket_path, fallback=False)
        with AgentProcess(node, socket_path):
            for n, (name, attack) in enumerate(ATTACKS.items()):
                via = "agent" if n % 2 == 0 else "plugin"
                out.tried += 1
                _attack_case(node, make_pod, attack, shim if via == "agent" else None, out, f"{name} ({via})")
                out.leaks += [f"{name}: {leak}" for leak in leak_report(node, before)]
            out.tried += 1
            _hidden_case(node, make_pod, shim, out)
            out.leaks += [f"hidden: {leak}" for leak in leak_report(node, before)]
    return out


def _call(node: Node, shim: Path | None, env: dict[str, str], conf: dict[str, Any]) -> tuple[bytes, int]:
    if shim is not None:
        return execute([str(shim)], {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}, conf)
    return execute(PLUGIN, process_env(node, env), conf)


def _host_macs() -> set[str]:
    return {link.get("address", "") for link in ip_json("link", "show")}


def _attack_case(node: Node, make_pod: PodFactory, attack: PodMove, shim: Path | None, out: Outcome,
                 case: str) -> None:
    pod = make_pod()
    env = node.env("ADD", pod, container=f"pa{secrets.token_hex(5)}")
    conf = node.conf(0, vlan=230, mac="02:00:00:00:a7:01", ipam=node.host_local("10.78.0.0/24"))
    added, code = _call(node, shim, env, conf)
    if code != 0:
        out.fail(case, f"ADD answered {code} {added[:200]!r}")
        return
    foreign = attack(node, pod, make_pod)
    stdout, code = _call(node, shim, {**env, "CNI_COMMAND": "DEL"}, conf)
    if (stdout, code) != (b"", 0):
        out.fail(case, f"DEL answered {code} {stdout[:200]!r}")
    if foreign & _host_macs():
        out.leaks.append(f"{case}: a link the pod made is in the host namespace")
    make_pod.remove(pod)


def _hidden_case(node: Node, make_pod: PodFactory, shim: Path, out: Outcome) -> None:
    """The VF moved into another namespace of the pod's: DEL says "try again" and keeps
    everything until the VF is back in the pod (under any name)."""
    case = "VF hidden in another namespace (agent)"
    pod, hideout = make_pod(), make_pod()
    env = node.env("ADD", pod, container=f"ph{secrets.token_hex(5)}")
    conf = node.conf(2, vlan=232, ipam=node.host_local("10.78.2.0/24"))
    added, code = _call(node, shim, env, conf)
    if code != 0:
        out.fail(case, f"ADD answered {code} {added[:200]!r}")
        return
    ip("link", "set", "net1", "netns", os.path.basename(hideout), "name", "stash", netns=pod)
    foreign = _decoy(pod, "net1")
    stdout, code = _call(node, shim, {**env, "CNI_COMMAND": "DEL"}, conf)
    if code == 0 or answer(stdout).get("code") != 11:
        out.fail(case, f"DEL with the VF hidden answered {code} {stdout[:200]!r}, not 'try again'")
    if node.ctx.netlink.vf_settings(node.pf, 2).vlan != 232 or not node.ctx.store.records(pending=True):
        out.fail(case, "DEL with the VF hidden undid part of the attachment")
    ip("link", "set", "stash", "netns", os.path.basename(pod), "name", "back", netns=hideout)
    stdout, code = _call(node, shim, {**env, "CNI_COMMAND": "DEL"}, conf)
    if (stdout, code) != (b"", 0):
        out.fail(case, f"DEL once the VF was back answered {code} {stdout[:200]!r}")
    if foreign & _host_macs():
        out.leaks.append(f"{case}: a link the pod made is in the host namespace")
    make_pod.remove(hideout)
    make_pod.remove(pod)


# -- class 2: caller-controlled paths --------------------------------------------------------------

def caller_paths(tmp: Path) -> Outcome:
    """Device-info paths outside the device-info directory, relative, with '..', through symlinks,
    at a FIFO or directory: INVALID_CONFIG and nothing changed. logFile paths outside the log
    directory or through links: the call succeeds and nothing is written there."""
    out = Outcome("hostile paths: CNIDeviceInfoFile refused before any change, logFile never written outside")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        devinfo, logs = tmp / "devinfo", tmp / "log"
        node.ctx = dataclasses.replace(node.ctx, devinfo_dir=str(devinfo), log_dir=str(logs))
        victim = tmp / "victim"
        victim.write_text("keep")
        victim.chmod(0o600)
        (devinfo / "sub").mkdir(parents=True, exist_ok=True)
        logs.mkdir()
        (logs / "hard.log").hardlink_to(victim)
        (logs / "soft.log").symlink_to(victim)
        (tmp / "outside").mkdir()
        (devinfo / "linked").symlink_to(tmp / "outside")
        (devinfo / "planted.json").symlink_to(victim)
        os.mkfifo(devinfo / "fifo")
        bad = [str(victim), str(tmp / "missing" / "x.json"), "/etc/sriovkit-rel-probe", "/proc/self/environ",
               "relative.json", f"{devinfo}/../victim", f"{devinfo}/sub/../../victim", f"{devinfo}-x/f",
               f"{devinfo}/linked/x.json", f"{devinfo}/planted.json", f"{devinfo}/fifo", f"{devinfo}/sub"]
        for path in bad:
            out.tried += 1
            _refused_path_case(node, make_pod(), path, out)
        for log in [str(victim), f"{logs}/../victim", "/etc/sriovkit-rel.log", f"{logs}/hard.log", f"{logs}/soft.log"]:
            out.tried += 1
            pod = make_pod()
            conf = node.conf(1, logFile=log)
            for command in ("ADD", "DEL"):
                stdout, code = run_cni(node.env(command, pod), json.dumps(conf).encode(), node.ctx)
                if code != 0:
                    out.fail(f"logFile {log}", f"{command} answered {code} {stdout[:200]!r}")
        if victim.read_text() != "keep" or victim.stat().st_mode & 0o777 != 0o600:
            out.leaks.append("the victim file was changed")
        for probe in ("/etc/sriovkit-rel-probe", "/etc/sriovkit-rel.log"):
            if os.path.lexists(probe):
                out.leaks.append(f"{probe} was created")
        if list((tmp / "outside").iterdir()) or (tmp / "missing").exists():
            out.leaks.append("a file or directory was made outside the device-info directory")
        out.leaks += leak_report(node, before)
    return out


def _refused_path_case(node: Node, pod: str, path: str, out: Outcome) -> None:
    conf = node.conf(0, vlan=9, ipam=node.host_local("10.78.9.0/24"), runtimeConfig={"CNIDeviceInfoFile": path})
    stdout, code = run_cni(node.env("ADD", pod), json.dumps(conf).encode(), node.ctx)
    if code == 0 or answer(stdout).get("code") != 7:
        out.fail(f"CNIDeviceInfoFile {path}", f"ADD answered {code} {stdout[:200]!r}, not INVALID_CONFIG")
        run_cni(node.env("DEL", pod), json.dumps(conf).encode(), node.ctx)


# -- class 3: GC lists ------------------------------------------------------------------------------

MALFORMED_GC: list[Any] = [
    "missing", None, {}, "c", 0, [1], [[]], [None], [{"containerID": 5, "ifname": "net1"}],
    [{"containerID": "keep", "ifname": None}], [{"containerID": "keep"}], [{"ifname": "net1"}],
    [{"containerID": "", "ifname": "net1"}], [{"containerID": "keep", "ifname": "net1"}, "x"],
]


def gc_lists(tmp: Path) -> Outcome:
    """GC with a missing or malformed cni.dev/valid-attachments: INVALID_CONFIG, every pod keeps its VF."""
    out = Outcome("GC: missing or malformed valid-attachments refused, no VF released")
    with sim_node(tmp) as node, pods() as make_pod:
        before = node.views()
        held = [(make_pod(), f"gc{i}") for i in range(2)]
        confs = [node.conf(i, version="1.1.0", vlan=60 + i) for i in range(2)]
        for (pod, container), conf in zip(held, confs, strict=True):
            stdout, code = run_cni(node.env("ADD", pod, container=container), json.dumps(conf).encode(), node.ctx)
            if code != 0:
                out.fail("set-up", f"ADD answered {stdout[:200]!r}")
        records = sorted(r.to_json() for r in node.ctx.store.records(pending=True))
        for value in MALFORMED_GC:
            out.tried += 1
            gc: dict[str, Any] = {"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov"}
            if value != "missing":
                gc["cni.dev/valid-attachments"] = value
            stdout, code = run_cni({"CNI_COMMAND": "GC", "CNI_PATH": "/usr/lib/cni"}, json.dumps(gc).encode(),
                                   node.ctx)
            if code == 0 or answer(stdout).get("code") != 7:
                out.fail(f"GC {json.dumps(value)}", f"answered {code} {stdout[:200]!r}, not INVALID_CONFIG")
            if sorted(r.to_json() for r in node.ctx.store.records(pending=True)) != records:
                out.fail(f"GC {json.dumps(value)}", "released an attachment")
        for (pod, container), conf in zip(held, confs, strict=True):
            run_cni(node.env("DEL", pod, container=container), json.dumps(conf).encode(), node.ctx)
        out.leaks += leak_report(node, before)
    return out
