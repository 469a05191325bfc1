"""2. Races: ADD/DEL loops through the agent and standalone at once, two ADDs for one VF, a late DEL."""


from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sriovkit.cni.faults import ENV_KILL_AFTER
from tests.reliability.scenarios.rig import (
    PLUGIN,
    AgentProcess,
    Outcome,
    answer,
    execute,
    pods,
    process_env,
    shim_for,
    sim_node,
)
from tests.support.cni_host import Node
from tests.support.kernel import pod_link
from tests.support.leaks import leak_report

# -- 2. races ---------------------------------------------------------------------------------

def taken_error(out: bytes) -> bool:
    """The clear answer for a contended VF: already attached to another pod, or its lock busy."""
    data = answer(out)
    msg = str(data.get("msg", ""))
    return (data.get("code") == 100 and "is already attached" in msg) or (data.get("code") == 11 and "busy" in msg)


def in_pod(pod: str, ifname: str = "net1") -> bool:
    return subprocess.run(["ip", "-n", os.path.basename(pod), "link", "show", ifname], capture_output=True,
                          check=False).returncode == 0


@dataclass
class RaceRig:
    """A node with an agent process and two shims: one served by the agent, one whose agent
    socket does not exist (every call runs standalone, the shim's fallback)."""

    node: Node
    via: dict[str, Path]
    conf_of: Any  # Callable[[int], dict]

    def host_names(self, vf: int) -> list[str]:
        """The VF's interface names in the host namespace, per the host's tree (a plain file read)."""
        net = self.node.host.root / "sys" / "bus" / "pci" / "devices" / self.node.vf(vf) / "net"
        try:
            return sorted(os.listdir(net))
        except FileNotFoundError:
            return []

    def call(self, path: str, command: str, vf: int, pod: str, container: str) -> tuple[bytes, int]:
        """(stdout, exit status); an empty stdout on failure is replaced by a note with stderr's tail."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.node.env(command, pod, container=container)}
        proc = subprocess.run([str(self.via[path])], input=json.dumps(self.conf_of(vf)).encode(), env=env,
                              capture_output=True, timeout=120, check=False)
        if proc.returncode != 0 and not proc.stdout.strip():
            return f"<nothing on stdout via {path}; stderr: {proc.stderr[-600:]!r}>".encode(), proc.returncode
        return proc.stdout, proc.returncode


@contextlib.contextmanager
def race_rig(tmp: Path, vfs: int) -> Iterator[RaceRig]:
    with sim_node(tmp, num_vfs=vfs) as node:
        socket_path = tmp / "agent" / "cni.sock"
        via = {"agent": shim_for(node, tmp / "bin-agent", socket_path),
               "standalone": shim_for(node, tmp / "bin-alone", tmp / "no-agent" / "cni.sock")}

        def conf_of(vf: int) -> dict[str, Any]:
            return node.conf(vf, vlan=100 + vf, spoofchk="off", mac=f"02:00:00:00:88:{vf:02x}",
                             ipam=node.host_local("10.88.0.0/24"))

        with AgentProcess(node, socket_path):
            yield RaceRig(node, via, conf_of)


def races(tmp: Path, *, workers: int = 32, cycles: int = 100, vfs: int = 8) -> Outcome:
    """`workers` loops of ADD then DEL, `cycles` each, over `vfs` VFs (worker w wants VF w % vfs),
    each call through the agent or standalone at random. A won ADD must put the VF in that pod and
    no other; a lost one must be the clear "taken/busy" error; every DEL must succeed and never
    disturb the winner."""
    import random
    import threading

    out = Outcome(f"races: {workers} ADD/DEL loops x {cycles} over {vfs} VFs, agent+standalone")
    guard = threading.Lock()
    owners: dict[int, str] = {}
    with race_rig(tmp, vfs) as rig, pods() as make_pod:
        before = rig.node.views()
        pod_of = [make_pod() for _ in range(workers)]

        def record(case: str, why: str) -> None:
            with guard:
                out.fail(case, why)

        def loop(w: int) -> None:
            rng = random.Random(w)
            vf, pod = w % vfs, pod_of[w]
            for c in range(cycles):
                container = f"w{w}c{c}x{secrets.token_hex(4)}"
                case = f"worker {w} cycle {c} VF {vf}"
                added, code = rig.call(rng.choice(("agent", "standalone")), "ADD", vf, pod, container)
                with guard:
                    out.tried += 1
                if code == 0:
                    _holder_checks(vf, pod, container, case, owners, guard, record, rig.host_names(vf))
                elif not taken_error(added):
                    record(case, f"ADD answered {code} {added[:200]!r}")
                deleted = rig.call(rng.choice(("agent", "standalone")), "DEL", vf, pod, container)
                if deleted != (b"", 0):
                    record(case, f"DEL answered {deleted[1]} {deleted[0][:200]!r}")

        threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for pod in pod_of:
            make_pod.remove(pod)
        out.leaks += leak_report(rig.node, before)
    return out


def _holder_checks(vf: int, pod: str, container: str, case: str, owners: dict[int, str], guard: Any,
                   record: Any, host_names: list[str]) -> None:
    """The winner: nobody else holds the VF, its interface is in the pod and not in the host (as the
    host's tree, which follows the interfaces, shows), until just before its DEL."""
    with guard:
        holder = owners.get(vf)
        owners[vf] = container
    if holder is not None:
        record(case, f"VF {vf} given to {container} while {holder} held it")
    if not in_pod(pod):
        record(case, "ADD succeeded but net1 is not in the pod")
    if host_names:
        record(case, f"ADD succeeded but the host still shows {host_names}")
    with guard:
        owners.pop(vf, None)  # before its DEL: once DEL starts the VF may go to the next pod


def same_vf_at_once(tmp: Path, rounds: int) -> Outcome:
    """Two ADDs for one VF started together (one through the agent, one standalone): exactly one
    wins, the other gets the clear error; both DELs succeed."""
    import threading

    out = Outcome("races: two ADDs for one VF at once")
    with race_rig(tmp, 2) as rig, pods() as make_pod:
        before = rig.node.views()
        for n in range(rounds):
            out.tried += 1
            case = f"round {n}"
            contenders = [("agent", make_pod(), f"r{n}a"), ("standalone", make_pod(), f"r{n}s")]
            answers: dict[str, tuple[bytes, int]] = {}
            start = threading.Barrier(2)

            def add(path: str, pod: str, container: str, start: threading.Barrier,
                    answers: dict[str, tuple[bytes, int]]) -> None:
                start.wait()
                answers[container] = rig.call(path, "ADD", 0, pod, container)

            threads = [threading.Thread(target=add, args=(*c, start, answers)) for c in contenders]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            won = [c for c in contenders if answers[c[2]][1] == 0]
            lost = [c for c in contenders if answers[c[2]][1] != 0]
            if len(won) != 1 or not all(taken_error(answers[c[2]][0]) for c in lost):
                out.fail(case, f"answers {answers}")
            if won and not in_pod(won[0][1]):
                out.fail(case, "the winner's pod has no net1")
            for path, pod, container in contenders:
                if rig.call(path, "DEL", 0, pod, container) != (b"", 0):
                    out.fail(case, f"DEL of {container} failed")
                make_pod.remove(pod)
        out.leaks += leak_report(rig.node, before)
    return out


def late_del_of_an_old_pod(tmp: Path, rounds: int) -> Outcome:
    """Pod A has the VF and gives it back, pod B gets it with other settings, then A's DEL comes
    again (a runtime retrying, through the agent or standalone, A's namespace alive or deleted, A's
    first ADD whole or killed half-way): B's interface, MAC, VLAN and address stay as they are."""
    out = Outcome("races: late DEL of an old pod")
    with race_rig(tmp, 2) as rig, pods() as make_pod:
        node = rig.node
        before = node.views()
        for n in range(rounds):
            out.tried += 1
            path = ("agent", "standalone")[n % 2]
            case = f"round {n} via {path}"
            old_pod, new_pod = make_pod(), make_pod()
            old, new = f"old{n}", f"new{n}"
            if n % 3 == 2:  # A's ADD was killed after moving the VF; its DEL gave it back
                env = process_env(node, node.env("ADD", old_pod, container=old), **{ENV_KILL_AFTER: "set mac@1"})
                execute(PLUGIN, env, rig.conf_of(0))
            else:
                rig.call(path, "ADD", 0, old_pod, old)
            rig.call(path, "DEL", 0, old_pod, old)
            new_conf = node.conf(0, vlan=300, mac="02:00:00:00:99:99", ipam=node.host_local("10.88.0.0/24"))
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **node.env("ADD", new_pod, container=new)}
            added, code = execute([str(rig.via[path])], env, new_conf)
            if code != 0:
                out.fail(case, f"B's ADD failed: {added[:200]!r}")
                continue
            if n % 2:
                make_pod.remove(old_pod)
            seen = _attachment_view(node, new_pod)
            if rig.call(path, "DEL", 0, old_pod, old) != (b"", 0):
                out.fail(case, "A's late DEL failed")
            if _attachment_view(node, new_pod) != seen:
                out.fail(case, f"A's late DEL changed B's VF: {seen} -> {_attachment_view(node, new_pod)}")
            if execute([str(rig.via[path])], {**env, "CNI_COMMAND": "DEL"}, new_conf) != (b"", 0):
                out.fail(case, "B's DEL failed")
            make_pod.remove(old_pod)
            make_pod.remove(new_pod)
        out.leaks += leak_report(node, before)
    return out


def _attachment_view(node: Node, pod: str) -> tuple[Any, ...]:
    shown = pod_link(pod, "net1")
    link = [shown] if shown else []
    settings = node.ctx.netlink.vf_settings(node.pf, 0)
    return (bool(link), link[0].get("address") if link else None,
            sorted(a["local"] for a in link[0].get("addr_info", [])) if link else [], settings)
