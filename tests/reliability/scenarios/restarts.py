"""3. Restarts: the agent and the kubelet simulator restarted while pods hold VFs."""


from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.scenarios.rig import (
    AgentProcess,
    Outcome,
    PodFactory,
    execute,
    pods,
    shim_for,
    sim_node,
)
from tests.support.cni_host import Node
from tests.support.leaks import leak_report

# -- 3. restarts ----------------------------------------------------------------------------------

RESOURCE_NAME = "sriov_rel"
RESOURCE = f"intel.com/{RESOURCE_NAME}"


@dataclass
class RestartRig:
    node: Node
    kubelet: Any
    tmp: Path
    shim: Path
    socket_path: Path
    agent_args: list[str]
    registration_latencies: list[float] = field(default_factory=list)

    def agent(self) -> AgentProcess:
        return AgentProcess(self.node, self.socket_path, extra=self.agent_args)

    def pool(self, count: int, timeout: float = 15) -> dict[str, bool]:
        """The kubelet's view of the pool once it has `count` devices: id -> healthy."""
        try:
            devices = self.kubelet.wait_for_devices(RESOURCE, count, timeout=timeout)
        except TimeoutError:
            devices = self.kubelet.resources().get(RESOURCE, {})
        return {i: s.healthy for i, s in devices.items()}

    def cni(self, command: str, pod: str, container: str, device: str) -> tuple[bytes, int]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.node.env(command, pod, container=container)}
        conf = self.node.conf(0, deviceID=device, vlan=55, ipam=self.node.host_local("10.66.0.0/24"))
        return execute([str(self.shim)], env, conf)


@contextlib.contextmanager
def restart_rig(tmp: Path, vfs: int = 4) -> Iterator[RestartRig]:
    from sriovkit.kubesim import Kubelet

    with sim_node(tmp, num_vfs=vfs, vendor="8086", device="1592", vfDevice="1889", driver="ice",
                  vfDriver="iavf") as node:
        config = tmp / "config.json"
        config.write_text(json.dumps({"resourceList": [
            {"resourceName": RESOURCE_NAME, "selectors": {"drivers": ["iavf"], "pfNames": [node.pf]}}]}))
        kubelet = Kubelet(tmp / "device-plugins", pod_resources_socket=tmp / "pod-resources.sock")
        kubelet.start()
        socket_path = tmp / "agent" / "cni.sock"
        args = ["--config-file", str(config), "--device-plugin-dir", str(tmp / "device-plugins"),
                "--work-dir", str(tmp)]
        try:
            yield RestartRig(node, kubelet, tmp, shim_for(node, tmp / "bin", socket_path), socket_path, args)
        finally:
            kubelet.stop()


def _registrations_after(kubelet: Any, count: int, timeout: float = 15) -> list[Any]:
    kubelet.wait_for(lambda k: len(k.registrations) > count, timeout)
    return list(kubelet.registrations[count:])


def agent_restart_with_pods(tmp: Path, rounds: int, *, registration_budget_s: float | None = None) -> Outcome:
    """Pods hold VFs (allocated by the kubelet, attached by CNI through the agent); the agent is
    SIGKILLed or stopped, then started again: it re-registers, its pool keeps every VF (those
    inside pods too) with the same health, the kubelet's assignments stay, and DEL through the
    new agent gives every VF back. With `registration_budget_s`, a slower re-registration (from
    the new agent starting its components) counts as a failure."""
    out = Outcome("restarts: agent restarted while pods hold VFs")
    with restart_rig(tmp) as rig, pods() as make_pod:
        before = rig.node.views()
        agent = rig.agent()
        try:
            pool = rig.pool(4)
            if len(pool) != 4 or not all(pool.values()):
                out.fail("start", f"pool before any restart: {pool}")
            held = _attach_pods(rig, make_pod, 2, out)
            assignments = dict(rig.kubelet.assignments)
            for n in range(rounds):
                out.tried += 1
                how = "SIGKILL" if n % 2 == 0 else "SIGTERM"
                case = f"round {n} ({how})"
                seen = len(rig.kubelet.registrations)
                if how == "SIGKILL":
                    os.killpg(agent.proc.pid, 9)
                agent.stop()
                agent = rig.agent()
                regs = _registrations_after(rig.kubelet, seen)
                if not regs:
                    out.fail(case, "the agent did not register again")
                    continue
                latency = regs[0].at - agent.started_at
                rig.registration_latencies.append(latency)
                if registration_budget_s is not None and latency > registration_budget_s:
                    out.fail(case, f"re-registered {latency:.2f}s after starting")
                after = rig.pool(4)
                if after != pool:
                    out.fail(case, f"pool changed: {pool} -> {after}")
                if dict(rig.kubelet.assignments) != assignments:
                    out.fail(case, "the kubelet's assignments changed")
            for pod, container, device in held:
                if rig.cni("DEL", pod, container, device) != (b"", 0):
                    out.fail("DEL after the restarts", f"{container} on {device}")
        finally:
            agent.stop()
        out.leaks += leak_report(rig.node, before)
    out.scenario += f" (re-registration max {max(rig.registration_latencies, default=0):.2f}s)"
    return out


def _attach_pods(rig: RestartRig, make_pod: PodFactory, count: int, out: Outcome) -> list[tuple[str, str, str]]:
    held = []
    for n in range(count):
        name = f"pod{n}"
        rig.kubelet.allocate(name, "app", {RESOURCE: 1})
        device = rig.kubelet.assignments[("default", name, "app")].devices[RESOURCE][0]
        pod, container = make_pod(), f"rs{n}{secrets.token_hex(4)}"
        added, code = rig.cni("ADD", pod, container, device)
        if code != 0:
            out.fail(f"ADD for {name}", added[:200].decode(errors="replace"))
            continue
        held.append((pod, container, device))
    return held


def kubelet_restart(tmp: Path, rounds: int, *, registration_budget_s: float | None = None) -> Outcome:
    """The kubelet (simulator) restarts, wiping the device-plugin sockets: the agent registers again
    (within `registration_budget_s` when given), and the pool it reports is the one before."""
    out = Outcome("restarts: kubelet restarted")
    with restart_rig(tmp) as rig, pods() as make_pod:
        before = rig.node.views()
        with rig.agent():
            pool = rig.pool(4)
            held = _attach_pods(rig, make_pod, 1, out)
            for n in range(rounds):
                out.tried += 1
                case = f"round {n}"
                seen = len(rig.kubelet.registrations)
                rig.kubelet.restart(wipe_sockets=True)
                restarted = time.monotonic()
                regs = _registrations_after(rig.kubelet, seen)
                if not regs:
                    out.fail(case, "the agent did not register again")
                    continue
                latency = regs[0].at - restarted
                rig.registration_latencies.append(latency)
                if registration_budget_s is not None and latency > registration_budget_s:
                    out.fail(case, f"re-registered {latency:.2f}s after the kubelet restarted")
                after = rig.pool(4)
                if after != pool:
                    out.fail(case, f"pool changed: {pool} -> {after}")
            for pod, container, device in held:
                if rig.cni("DEL", pod, container, device) != (b"", 0):
                    out.fail("DEL after the restarts", f"{container} on {device}")
        out.leaks += leak_report(rig.node, before)
    out.scenario += f" (re-registration max {max(rig.registration_latencies, default=0):.2f}s)"
    return out
