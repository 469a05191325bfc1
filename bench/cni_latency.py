"""CNI ADD+DEL latency on veth-backed VFs of a simulated host (root).

Paths measured, each N cycles of ADD then DEL with the same config (vlan, spoofchk, mac,
host-local IPAM, so every kind of step is in the numbers):
- shim -> agent: the installed `sriov` shim exec'd per call, served by the agent's CNI socket
  (`CniSocketServer` + `CniService`, as `sriovctl agent` runs them), what a runtime gets;
- in-process: `run_cni` called directly (the agent's work without exec and socket), also with
  the seeds' netconf naming only the PF (`if0`: the plugin picks the VF), interleaved;
- standalone: ``python -m sriovkit.cni.plugin`` exec'd per call (the shim's fallback path);
- shim start-up alone: the shim exec'd against an agent that answers at once, next to a bare
  ``python3 -I -S -c pass``, so the shim's own overhead is the difference;
- the floor, measured in the same run: the bare kernel work of the same ADD/DEL done by a minimal
  loop of plain rtnetlink requests (a host socket kept, one into the pod namespace per operation;
  look up, move + rename, MAC, up, address; on DEL down, move back under the old name, MAC back) plus one
  exec of host-local each. The PF-side VF settings have no kernel counterpart on a veth (the
  simulated switch keeps them in a file), so the floor leaves them out: a slight advantage to it;
- the floor with durable state: the floor plus the writes the CNI's state needs in the same state
  directory (ADD: the journal written, fsynced, renamed and its directory fsynced before the first
  change, the record written and renamed after the last; DEL: both unlinked, the directory fsynced
  once). What stays when every other cost is gone: the journal must be on disk before the first
  change (sriovkit.cni.state, "Durability").
The simulated host's tree is on tmpfs (/dev/shm) where there is one, as a node's sysfs is memory;
the CNI state and host-local's dataDir are on disk, as on a node: a fresh journaled ext4
(`statefs.state_filesystem`; this VM's root ext4 has none), or with `--state-on tmpdir` the
temporary directory's own.
Prints p50, p99 and max per path and command, and ADD/DEL p50 through the agent over each floor.

    .venv/bin/python bench/cni_latency.py [--cycles 200] [--standalone 20] [--startup 100] [--json FILE]
                                          [--profile FILE] [--state-on ext4|tmpdir]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyroute2 import netns as pyroute2_netns

from sriovkit.agent.cni_service import CniService
from sriovkit.cni.context import CniContext
from sriovkit.cni.plugin import run_cni
from sriovkit.commands.ports import agent_cni_context, netlink_for, provisioner_for
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink import rtmsg
from sriovkit.netlink.rawlink import LinkMessage, LinkQuery, open_query
from sriovkit.shim.install import ShimSettings, install_shim, native_shim_binary
from sriovkit.shim.server import CniSocketServer
from sriovkit.sim import host as sim
from sriovkit.sim.net import attach_veths

sys.path.insert(0, str(Path(__file__).resolve().parent))
import statefs
from agentprofile import ProfiledHandler

Runner = Callable[[dict[str, str], bytes], tuple[bytes, int]]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cycle(run: Runner, env: dict[str, str], conf: bytes, times: dict[str, list[float]]) -> None:
    for command in ("ADD", "DEL"):
        t0 = time.perf_counter()
        out, code = run({**env, "CNI_COMMAND": command}, conf)
        times[command].append(time.perf_counter() - t0)
        if code != 0:
            raise SystemExit(f"{command} failed: {out.decode(errors='replace')}")


def report(label: str, times: dict[str, list[float]]) -> None:
    for command, samples in times.items():
        if samples:
            print(f"{label:<12} {command:<5} n={len(samples):<5} p50={statistics.median(samples) * 1e3:7.2f} ms "
                  f"p99={percentile(samples, 0.99) * 1e3:7.2f} ms max={max(samples) * 1e3:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=200, help="ADD+DEL cycles through the agent and in-process")
    parser.add_argument("--standalone", type=int, default=20, help="cycles through a plugin subprocess")
    parser.add_argument("--startup", type=int, default=100, help="shim start-up samples")
    parser.add_argument("--json", help="also write the figures here (for bench/table.py)")
    parser.add_argument("--profile", help="cProfile the agent's calls (shim -> agent path) into this file")
    parser.add_argument("--state-on", choices=statefs.CHOICES, default="ext4", help=statefs.HELP)
    args = parser.parse_args()
    memory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with statefs.state_filesystem(args.state_on) as disk, \
            tempfile.TemporaryDirectory(prefix="cni-bench-", dir=disk) as tmp, \
            tempfile.TemporaryDirectory(prefix="cni-bench-host-", dir=memory) as host_tmp:
        root = Path(tmp)
        pf = f"bn{secrets.token_hex(3)}"
        host = sim.create(Path(host_tmp) / "host", {"pfs": [{"name": pf, "numVfs": 2, "totalVfs": 8}]})
        ns_name = f"cnibench-{secrets.token_hex(4)}"
        pyroute2_netns.create(ns_name)
        try:
            with attach_veths(host):
                run_bench(args, host, root, f"/var/run/netns/{ns_name}")
        finally:
            pyroute2_netns.remove(ns_name)


def run_bench(args: argparse.Namespace, host: sim.SimulatedHost, root: Path, netns: str) -> None:
    sysfs = Sysfs(host.root)
    state_dir = str(root / "state")
    ctx = CniContext(sysfs=sysfs, netlink=netlink_for(sysfs), drivers=provisioner_for(sysfs), state_dir=state_dir)
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0", "name": "bench", "type": "sriov", "deviceID": host.vf_address(0, 0),
        "vlan": 100, "spoofchk": "off", "mac": "02:00:00:00:be:01",
        "ipam": {"type": "host-local", "subnet": "10.123.0.0/24", "dataDir": str(root / "ipam")},
    }
    env = {"CNI_CONTAINERID": "bench", "CNI_NETNS": netns, "CNI_IFNAME": "net1", "CNI_PATH": "/usr/lib/cni"}
    stdin = json.dumps(conf).encode()
    shim = _install_shim(root, host, state_dir)
    socket_path = root / "agent" / "cni.sock"
    service = CniService(agent_cni_context(host.root, state_dir=state_dir))
    handler = ProfiledHandler(service) if args.profile else service
    agent = CniSocketServer(socket_path, handler)
    agent.start()
    via_agent: dict[str, list[float]] = {"ADD": [], "DEL": []}
    floor_times: dict[str, list[float]] = {"ADD": [], "DEL": []}
    durable_times: dict[str, list[float]] = {"ADD": [], "DEL": []}
    floor = KernelFloor(host.vf_netdev_name(0, 0), netns, conf["ipam"], env)
    durable = DurableStateFloor(root / "state-floor")
    try:
        for _ in range(args.cycles):  # interleaved: the machine is noisy
            cycle(lambda e, s: _exec([str(shim)], e, s, {}), env, stdin, via_agent)
            floor.cycle(floor_times)
            durable.cycle(floor, durable_times)
        report("shim->agent", via_agent)
        report("floor", floor_times)
        report("floor+state", durable_times)
    finally:
        agent.stop()
        floor.close()
    if isinstance(handler, ProfiledHandler):
        handler.dump(args.profile)
    for label, base in (("floor", floor_times), ("floor with durable state", durable_times)):
        ratios = {c: statistics.median(via_agent[c]) / statistics.median(base[c]) for c in via_agent}
        print(f"through the agent over the {label} (p50): ADD {ratios['ADD']:.2f}x, DEL {ratios['DEL']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([
            {"figure": f"CNI {c} p50 on the host, shim -> agent vs kernel+IPAM floor", "unit": "ms",
             "sriovkit": statistics.median(via_agent[c]) * 1e3, "floor": statistics.median(floor_times[c]) * 1e3}
            for c in ("ADD", "DEL")] + [
            {"figure": f"CNI {c} p50 on the host, shim -> agent vs kernel+IPAM+durable-journal floor", "unit": "ms",
             "sriovkit": statistics.median(via_agent[c]) * 1e3, "floor": statistics.median(durable_times[c]) * 1e3}
            for c in ("ADD", "DEL")]))
    times = {"ADD": [], "DEL": []}
    picked: dict[str, list[float]] = {"ADD": [], "DEL": []}
    # the seeds' mode (issue 19): no deviceID, the plugin picks a VF of the PF (records, pools file, locks)
    pick_stdin = json.dumps({**{k: v for k, v in conf.items() if k != "deviceID"},
                             "if0": host.spec.pfs[0].name}).encode()
    for _ in range(args.cycles):  # interleaved with the deviceID cycles
        cycle(lambda e, s: run_cni(e, s, ctx), env, stdin, times)
        cycle(lambda e, s: run_cni(e, s, ctx), env, pick_stdin, picked)
    report("in-process", times)
    report("in-process, VF picked from the PF", picked)
    if args.standalone:
        proc_env = {"SRIOVKIT_HOST_ROOT": str(host.root), "SRIOVKIT_CNI_STATE_DIR": state_dir}
        times = {"ADD": [], "DEL": []}
        for _ in range(args.standalone):
            cycle(lambda e, s: _exec([sys.executable, "-m", "sriovkit.cni.plugin"], e, s, proc_env), env, stdin,
                  times)
        report("standalone", times)
    ctx.netlink.close()
    if args.startup:
        shim_startup(shim, root, socket_path, args.startup)


def floor_link(query: LinkQuery, name: str) -> LinkMessage:
    """The link a floor loop works on (it stops the bench if it is not there)."""
    link = query.get(name=name)
    if link is None:
        raise SystemExit(f"floor: {name} not found")
    return link


class KernelFloor:
    """The kernel's and host-local's share of one ADD and one DEL, done by the shortest loop: plain
    rtnetlink requests (sriovkit.netlink.rtmsg's encoding, no library on the way), a host socket
    kept, one socket into the pod namespace per operation."""

    def __init__(self, vf: str, netns: str, ipam: dict[str, Any], env: dict[str, str]) -> None:
        self.vf, self.netns, self.env = vf, netns, env
        self.ipam_conf = json.dumps({"cniVersion": "1.0.0", "name": "floor", "ipam": {**ipam, "dataDir":
                                     ipam["dataDir"] + "-floor"}}).encode()
        self.host = LinkQuery()
        self.mac = floor_link(self.host, vf).get_attr("IFLA_ADDRESS")

    def _host_local(self, command: str) -> dict[str, Any]:
        env = {**self.env, "CNI_CONTAINERID": "floor", "CNI_COMMAND": command, "CNI_IFNAME": "net9"}
        p = subprocess.run(["/usr/lib/cni/host-local"], input=self.ipam_conf, env=env, capture_output=True,
                           check=True)
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def cycle(self, times: dict[str, list[float]]) -> None:
        link = rtmsg.link_change
        t0 = time.perf_counter()
        index = floor_link(self.host, self.vf).index
        fd = os.open(self.netns, os.O_RDONLY)
        try:
            self.host.change(rtmsg.RTM_NEWLINK, link(index, attrs=[rtmsg.net_ns_fd(fd), rtmsg.ifname("net1")]))
        finally:
            os.close(fd)
        pod = open_query(self.netns)
        try:
            pod_index = floor_link(pod, "net1").index
            pod.change(rtmsg.RTM_NEWLINK, link(pod_index, attrs=[rtmsg.address("02:00:00:00:be:02")]))
            pod.change(rtmsg.RTM_NEWLINK, link(pod_index, up=True))
            address = self._host_local("ADD")["ips"][0]["address"]
            pod.change(rtmsg.RTM_NEWADDR, rtmsg.address_change(pod_index, address),
                       rtmsg.NLM_F_CREATE | rtmsg.NLM_F_EXCL)
        finally:
            pod.close()
        times["ADD"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        self._host_local("DEL")
        pod = open_query(self.netns)
        try:
            pod_index = floor_link(pod, "net1").index
            pod.change(rtmsg.RTM_NEWLINK, link(pod_index, up=False))
            fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            try:
                pod.change(rtmsg.RTM_NEWLINK, link(pod_index, attrs=[rtmsg.net_ns_fd(fd), rtmsg.ifname(self.vf)]))
            finally:
                os.close(fd)
        finally:
            pod.close()
        index = floor_link(self.host, self.vf).index
        self.host.change(rtmsg.RTM_NEWLINK, link(index, attrs=[rtmsg.address(self.mac)]))
        times["DEL"].append(time.perf_counter() - t0)

    def close(self) -> None:
        self.host.close()


class DurableStateFloor:
    """The floor plus the state writes the CNI needs, in a state directory of its own on the same
    filesystem: what an ADD and a DEL cannot do without (the journal on disk before the first
    change, the committed record beside it before the answer, both gone for good after DEL)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(mode=0o700)
        self.dir = state_dir
        self.record = json.dumps({"containerID": "floor", "ifname": "net1", "pciAddress": "0000:00:00.0",
                                  "original": {"mac": "02:00:00:00:00:01", "mtu": 1500}}).encode()

    def _write(self, name: str, *, durable: bool) -> None:
        tmp = self.dir / f".tmp-{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, self.record)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / name)
        if durable:
            self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def cycle(self, floor: KernelFloor, times: dict[str, list[float]]) -> None:
        kernel: dict[str, list[float]] = {"ADD": [], "DEL": []}
        t0 = time.perf_counter()
        self._write("floor-net1.pending", durable=True)
        add_start = time.perf_counter()
        floor.cycle(kernel)  # ADD and DEL of the kernel floor; the DEL part is taken out again
        add_state = time.perf_counter()
        self._write("floor-net1.json", durable=False)
        add_end = time.perf_counter()
        times["ADD"].append((add_start - t0) + kernel["ADD"][0] + (add_end - add_state))
        t0 = time.perf_counter()
        os.unlink(self.dir / "floor-net1.json")
        os.unlink(self.dir / "floor-net1.pending")
        self._sync_dir()
        times["DEL"].append(kernel["DEL"][0] + time.perf_counter() - t0)


def _install_shim(root: Path, host: sim.SimulatedHost, state_dir: str) -> Path:
    """The native shim where it is built (what `sriovctl install-cni` installs), else the Python one."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    interpreter = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    native = native_shim_binary().is_file()
    print(f"(shim: {'native' if native else 'Python'})")
    return install_shim(bin_dir, ShimSettings(agent_socket=str(root / "agent" / "cni.sock"), interpreter=interpreter,
                                              host_root=str(host.root), state_dir=state_dir, native=native))


def _exec(argv: list[str], env: dict[str, str], stdin: bytes, extra: dict[str, str]) -> tuple[bytes, int]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra, **env}
    p = subprocess.run(argv, input=stdin, env=full, capture_output=True, check=False)
    return p.stdout, p.returncode


def shim_startup(shim: Path, root: Path, socket_path: Path, samples: int) -> None:
    """The shims against an agent that answers at once: what each costs per call. The Python
    shim's overhead is over a bare start of its interpreter; the native one is measured beside it
    (the installed one, when it is native)."""
    interpreter = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    python_dir = root / "python-shim"
    python_dir.mkdir()
    python_shim = install_shim(python_dir, ShimSettings(agent_socket=str(socket_path), interpreter=interpreter))
    argvs = {"python shim": [str(python_shim)], "bare": [interpreter, "-I", "-S", "-c", "pass"]}
    if shim.read_bytes()[:2] != b"#!":
        argvs["native shim"] = [str(shim)]
    server = CniSocketServer(socket_path, lambda env, stdin: (b"{}", 0))
    server.start()
    try:
        times: dict[str, list[float]] = {label: [] for label in argvs}
        for _ in range(samples):
            for label, argv in argvs.items():
                t0 = time.perf_counter()
                _exec(argv, {"CNI_COMMAND": "VERSION"}, b"{}", {})
                times[label].append(time.perf_counter() - t0)
    finally:
        server.stop()
    report("start-up", times)
    overhead = statistics.median(times["python shim"]) - statistics.median(times["bare"])
    print(f"Python shim overhead over a bare interpreter start (p50): {overhead * 1e3:.2f} ms")

if __name__ == "__main__":
    main()
