"""`sriovctl demo`: the whole flow on a simulated node, no NIC and no cluster needed (root, Linux).

What runs is the product, not a mock-up: a simulated node whose 2 PFs x 4 VFs are real veths (their
peers on a Linux bridge per PF, playing the NIC's embedded switch), the node agent (a device plugin
per pool, the CNI socket, metrics), the kubelet simulator speaking the real device-plugin and
podresources gRPC APIs, two "pods" (network namespaces) that each get a VF from the pool, and CNI
ADD/DEL through the installed `sriov` shim with the config Multus would delegate. A third PF's VFs
are served through DRA by the same agent: ResourceSlices published to an API server stand-in
through the real `kubernetes` client, and a claim prepared and unprepared by the kubelet simulator
over the kubelet's DRA gRPC API. Everything made
is registered for teardown the moment it exists, so Ctrl-C or SIGTERM at any point still leaves no
interface, namespace, socket or file behind; the last line says what (if anything) was left.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sriovkit import nodepaths

if TYPE_CHECKING:  # imported where used: `sriovctl demo --help` stays cheap
    from sriovkit.agent.node import NodeAgent
    from sriovkit.dra.driver import DraDriver
    from sriovkit.kubesim import Kubelet
    from sriovkit.netlink.model import VfSettings
from sriovkit.errors import SriovkitError

NETNS_DIR = nodepaths.NETNS_DIR
RESOURCE_NAME = "sriov_demo"
RESOURCE = f"{nodepaths.RESOURCE_PREFIX}/{RESOURCE_NAME}"
DRA_RESOURCE_NAME = "sriov_dra"
_DRA_DEVINFO_FILES = f"{nodepaths.RESOURCE_PREFIX}-{DRA_RESOURCE_NAME}-*"  # device_info_file_name's
DRA_DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
NODE_NAME = "demo-node"
SUBNET = "10.56.217.0/24"
VLAN = 100


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the whole flow on a simulated node (root; no NIC or cluster needed)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        from sriovkit.errors import UserError

        raise UserError("demo: needs root (it creates network namespaces and veth interfaces)")
    return run_demo(print)


class DemoStepFailed(SriovkitError):
    """A step of the flow did not do what it shows (a CNI call, a claim, a ping): the demo stops there."""


@dataclass
class Pod:
    name: str
    netns: str
    container_id: str = field(default_factory=lambda: secrets.token_hex(32))
    device: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    attached: bool = False

    @property
    def ip(self) -> str:
        return str(self.result["ips"][0]["address"]).split("/")[0]

    @property
    def mac(self) -> str:
        return str(self.result["interfaces"][0]["mac"])


def run_demo(say: Callable[[str], None]) -> int:
    tag = secrets.token_hex(2)
    stop = _Interruption()
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    start = time.monotonic()
    made: set[str] = set()  # interface names the flow created, to check afterwards
    try:
        with tempfile.TemporaryDirectory(prefix="sriovkit-demo-") as tmp:
            workdir = tmp
            stack = ExitStack()
            try:
                _run_interruptibly(_Flow(Path(tmp), tag, stack, say, made).run, stop, say)
            finally:  # disarmed here whichever way the flow ended: no signal cuts the teardown short
                stack.close()
        if stop.outside_flow:
            say("\ninterrupted: tearing down (the signal came after the flow; the teardown ran to its end)")
        leftovers = _leftovers(tag, made, workdir)
        say(f"\nteardown: {'left behind: ' + ', '.join(leftovers) if leftovers else 'nothing left behind'}"
            f" ({time.monotonic() - start:.1f} s in all)")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 1 if leftovers else 0


def _run_interruptibly(flow: Callable[[], None], stop: _Interruption, say: Callable[[str], None]) -> None:
    """Run the flow; SIGINT/SIGTERM stops it. Returns (or raises the flow's own error) with `stop`
    disarmed, also when the signal lands in the `finally` below (the handler disarms as it raises)."""
    try:
        try:
            stop.arm()
            flow()
        finally:
            stop.disarm()
    except KeyboardInterrupt:
        say("\ninterrupted: tearing down")


class _Interruption:
    """SIGINT/SIGTERM while the flow runs stops it (KeyboardInterrupt, once); outside the flow (its
    teardown above all) a signal is only noted, so the teardown always runs to its end and the
    report still says what was left."""

    def __init__(self) -> None:
        self.armed = False
        self.raised = False
        self.outside_flow = False

    def arm(self) -> None:
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            self.armed, self.raised = False, True
            raise KeyboardInterrupt
        self.outside_flow = self.outside_flow or not self.raised


class _Flow:
    def __init__(self, tmp: Path, tag: str, stack: ExitStack, say: Callable[[str], None], made: set[str]) -> None:
        self.tmp, self.tag, self.stack, self.say, self.made = tmp, tag, stack, say, made
        self.root = tmp / "node"
        self.pfs = [f"dm{tag}p0", f"dm{tag}p1"]  # the device plugin's
        self.dra_pf = f"dm{tag}p2"  # served through DRA

    def run(self) -> None:
        self.make_node()
        kubelet = self.start_kubelet()
        self.start_agent(kubelet)
        shim = self.install_shim()
        pods = [self.make_pod(name, kubelet) for name in ("pod-a", "pod-b")]
        self.heading("3. CNI ADD through the shim, with the config Multus would delegate (VLAN 100, host-local IPAM)")
        for pod in pods:
            self.cni(shim, "ADD", pod)
        self.show_pods(pods)
        self.ping(pods[0], pods[1])
        self.heading("5. CNI DEL: every VF back in the host namespace, as it was")
        for pod in pods:
            self.cni(shim, "DEL", pod)
            kubelet.release(pod.name)
        self.show_returned(pods)
        self.dra_claim(kubelet)
        self.show_metrics()

    # -- steps --------------------------------------------------------------------------------
    def make_node(self) -> None:
        from sriovkit.commands.inventory import device_table
        from sriovkit.host.discover import discover
        from sriovkit.host.sysfs import Sysfs
        from sriovkit.sim import host as sim
        from sriovkit.sim.net import attach_veths

        self.heading("1. A simulated node: 2 PFs x 4 VFs (+ 1 PF x 2 VFs for DRA); each VF a real veth, each PF a "
                     "bridge (its embedded switch)")
        pf = {"numVfs": 4, "totalVfs": 8, "vendor": "8086", "device": "1592", "vfDevice": "1889", "driver": "ice",
              "vfDriver": "iavf"}
        pfs = [{**pf, "name": name, "numaNode": n} for n, name in enumerate(self.pfs)]
        pfs.append({**pf, "name": self.dra_pf, "numVfs": 2, "numaNode": 0})
        self.host = sim.create(self.root, {"pfs": pfs})
        network = attach_veths(self.host)
        self.stack.callback(network.destroy)
        self.made.update(network.bridges, *((p.netdev, p.peer) for p in network.ports))
        self.say(device_table(discover(Sysfs(self.root))))

    def start_kubelet(self) -> Kubelet:
        from sriovkit.kubesim import Kubelet

        kubelet = Kubelet(self.tmp / "device-plugins", pod_resources_socket=self.tmp / "pod-resources.sock",
                          plugins_registry_dir=self.tmp / "plugins_registry", watch_interval=0.05)
        kubelet.start()
        self.stack.callback(kubelet.stop)
        return kubelet

    def start_agent(self, kubelet: Kubelet) -> None:
        from sriovkit.agent.cni_service import CniService
        from sriovkit.agent.metrics import AgentMetrics, MetricsServer
        from sriovkit.agent.node import NodeAgent
        from sriovkit.commands.ports import agent_cni_context
        from sriovkit.deviceplugin.manager import DevicePluginSettings
        from sriovkit.host.sysfs import Sysfs
        from sriovkit.shim.server import CniSocketServer

        self.heading("2. The node agent registers a device plugin per pool with the kubelet (simulator)")
        config = self.tmp / "config.json"
        config.write_text(json.dumps({"resourceList": [
            {"resourceName": RESOURCE_NAME, "selectors": {"drivers": ["iavf"], "pfNames": self.pfs}},
            {"resourceName": DRA_RESOURCE_NAME, "servedBy": "dra", "selectors": {"pfNames": [self.dra_pf]}}]},
            indent=2))
        self.say(f"config.json: {json.dumps(json.loads(config.read_text()))}")
        metrics = AgentMetrics()
        agent = NodeAgent(DevicePluginSettings(
            config_file=config, sysfs=Sysfs(self.root), proc_root=str(self.root / "proc"),
            device_plugin_dir=self.tmp / "device-plugins", devinfo_dir=self.tmp / "devinfo",
            cdi_dir=self.tmp / "cdi"), metrics=metrics)
        self.cni_socket = self.tmp / "run" / "cni.sock"
        self.state_dir = self.tmp / "cni-state"
        self.context = agent_cni_context(self.root, state_dir=str(self.state_dir))
        agent.add(CniSocketServer(self.cni_socket, CniService(self.context, metrics)))
        self.metrics_server = MetricsServer("127.0.0.1:0", metrics, agent.healthy)
        agent.add(self.metrics_server)
        agent.add(self._dra_driver(agent))
        started = time.monotonic()
        agent.start()
        self.stack.callback(agent.stop)
        devices = kubelet.wait_for_devices(RESOURCE, 8, timeout=10)
        healthy = sum(1 for d in devices.values() if d.healthy)
        self.say(f"kubelet sees {RESOURCE}: {len(devices)} devices, {healthy} healthy "
                 f"(registered {kubelet.registrations[0].at - started:.2f} s after the agent started)")

    def _dra_driver(self, agent: NodeAgent) -> DraDriver:
        from sriovkit.commands.ports import DriverBinderFor
        from sriovkit.dra.driver import DraDriver, DraSettings
        from sriovkit.dra.kube import KubernetesDraApi
        from sriovkit.kubesim.apiserver import FakeKubeApi

        self.api = FakeKubeApi()
        self.api.start()
        self.stack.callback(self.api.stop)
        kubeconfig = self.api.write_kubeconfig(self.tmp / "kubeconfig")
        self.dra = DraSettings(node_name=NODE_NAME, driver_name=DRA_DRIVER,
                               plugins_registry_dir=self.tmp / "plugins_registry",
                               plugins_dir=self.tmp / "plugins", state_dir=self.tmp / "dra-state",
                               cdi_dir=self.tmp / "cdi", devinfo_dir=self.tmp / "devinfo")
        return DraDriver(self.dra, agent.device_plugins, KubernetesDraApi(kubeconfig=str(kubeconfig)),
                         drivers=DriverBinderFor(agent.device_plugins.settings.sysfs))

    def dra_claim(self, kubelet: Kubelet) -> None:
        from sriovkit.kubesim.apiserver import CLAIMS, SLICES

        self.heading(f"6. DRA: {nodepaths.RESOURCE_PREFIX}/{DRA_RESOURCE_NAME} (\"servedBy\": \"dra\") as "
                     "ResourceSlices, and a claim the kubelet prepares")
        endpoint = kubelet.wait_for_dra(DRA_DRIVER, timeout=10)
        self.say(f"kubelet: DRA driver {DRA_DRIVER} registered ({endpoint.version}) at {endpoint.socket_path}")
        slices = self.api.wait_for(lambda api: [o for (k, _, _), o in api.objects.items()
                                                if k == SLICES and o["spec"]["devices"]], timeout=10)
        for item in slices:
            spec = item["spec"]
            first = spec["devices"][0]["attributes"]
            self.say(f"ResourceSlice {item['metadata']['name']}: pool {spec['pool']['name']}, devices "
                     + ", ".join(d["name"] for d in spec["devices"])
                     + f" (PFName {first[f'{DRA_DRIVER}/PFName']['string']}, "
                       f"resourceName {first['k8s.cni.cncf.io/resourceName']['string']})")
        device, pool = slices[0]["spec"]["devices"][0]["name"], slices[0]["spec"]["pool"]["name"]
        uid = secrets.token_hex(4) + "-demo-claim"
        self.api.put(CLAIMS, {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"namespace": "default", "name": "demo-claim", "uid": uid},
            "status": {"allocation": {"devices": {
                "results": [{"request": "vf", "driver": DRA_DRIVER, "pool": pool, "device": device}],
                "config": [{"source": "FromClaim", "requests": ["vf"], "opaque": {"driver": DRA_DRIVER, "parameters": {
                    "apiVersion": f"{DRA_DRIVER}/v1alpha1", "kind": "VfConfig", "netAttachDefName": "sriov-dra"}}}]}},
                "reservedFor": [{"resource": "pods", "name": "pod-c", "uid": "pod-c-uid"}]}})
        self.say(f"claim default/demo-claim: allocated {pool}/{device} (the scheduler's part, played by the demo)")
        claim = [("default", uid, "demo-claim")]
        answer = kubelet.prepare_claims(DRA_DRIVER, claim)[uid]
        self.stack.callback(kubelet.unprepare_claims, DRA_DRIVER, claim)  # undone even if interrupted
        if answer.error:
            raise DemoStepFailed(f"NodePrepareResources failed: {answer.error}")
        ids = [i for d in answer.devices for i in d.cdi_device_ids]
        spec_file = self.dra.cdi_dir / f"sriovkit-dra-{uid}.json"
        env = [e for d in json.loads(spec_file.read_text())["devices"] for e in d["containerEdits"].get("env", [])]
        devinfo = sorted(p.name for p in self.dra.devinfo_dir.glob(_DRA_DEVINFO_FILES))
        self.say(f"NodePrepareResources: CDI devices {', '.join(ids)}")
        self.say(f"  container env (CDI spec {spec_file.name}): {'; '.join(sorted(env))}")
        self.say(f"  Multus device-info: {', '.join(devinfo)}")
        gone = kubelet.unprepare_claims(DRA_DRIVER, claim)[uid]
        left = spec_file.exists() or any(self.dra.devinfo_dir.glob(_DRA_DEVINFO_FILES))
        self.say(f"NodeUnprepareResources: {gone.error or 'ok'}; CDI spec and device-info "
                 f"{'still there' if left else 'removed'}")

    def install_shim(self) -> Path:
        from sriovkit.shim.install import ShimSettings, install_shim

        bin_dir = self.tmp / "cni-bin"
        bin_dir.mkdir()
        interpreter = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        return install_shim(bin_dir, ShimSettings(agent_socket=str(self.cni_socket), fallback_python=sys.executable,
                                                  interpreter=interpreter, host_root=str(self.root),
                                                  state_dir=str(self.state_dir)))

    def make_pod(self, name: str, kubelet: Kubelet) -> Pod:
        from pyroute2 import netns

        pod = Pod(name, os.path.join(NETNS_DIR, f"sriovkit-demo-{self.tag}-{name}"))
        netns.create(os.path.basename(pod.netns))
        self.stack.callback(_remove_netns, pod.netns)
        responses = kubelet.allocate(name, "app", {RESOURCE: 1})
        pod.device = _device_from_pod_resources(self.tmp / "pod-resources.sock", name)
        env = dict(responses[RESOURCE].envs)
        if name == "pod-a":
            self.heading("Allocation: the kubelet asks GetPreferredAllocation, then Allocate; "
                         "Multus reads podresources")
        self.say(f"{name}: netns {pod.netns}; podresources says {RESOURCE} = {pod.device}; container env "
                 + ", ".join(f"{k}={v}" for k, v in sorted(env.items()) if not k.endswith("_INFO")))
        return pod

    def cni(self, shim: Path, command: str, pod: Pod) -> None:
        netconf = {"cniVersion": "1.0.0", "name": "sriov-demo", "type": "sriov", "deviceID": pod.device,
                   "vlan": VLAN, "spoofchk": "on", "trust": "on",
                   "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": str(self.tmp / "ipam")}}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
               "CNI_CONTAINERID": pod.container_id, "CNI_NETNS": pod.netns, "CNI_IFNAME": "net1",
               "CNI_PATH": f"{shim.parent}:/usr/lib/cni",
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod.name};"
                           f"K8S_POD_INFRA_CONTAINER_ID={pod.container_id}"}
        if command == "ADD" and not pod.attached:
            # DEL is owed from the moment ADD starts: an ADD the flow is interrupted in (Ctrl-C, SIGTERM)
            # kills the shim, not the agent's ADD, which may still move the VF into the pod
            pod.attached = True
            self.stack.callback(self._cleanup_del, shim, pod)
        started = time.monotonic()
        proc = subprocess.run([str(shim)], input=json.dumps(netconf).encode(), capture_output=True, env=env,
                              check=False, timeout=60)
        took = (time.monotonic() - started) * 1000
        if proc.returncode != 0:
            raise DemoStepFailed(f"CNI {command} for {pod.name} failed: {proc.stdout.decode().strip()} "
                                 f"{proc.stderr.decode().strip()}")
        if command == "ADD":
            pod.result = json.loads(proc.stdout)
            self.say(f"{pod.name}: ADD ok in {took:.0f} ms -> {pod.ip} on net1 ({pod.mac})")
        else:
            pod.attached = False
            self.say(f"{pod.name}: DEL ok in {took:.0f} ms")

    def _cleanup_del(self, shim: Path, pod: Pod) -> None:
        if pod.attached:  # only when the flow stopped after an ADD started and before its own DEL
            try:
                self.cni(shim, "DEL", pod)
            except (DemoStepFailed, OSError, subprocess.TimeoutExpired) as exc:
                self.say(f"{pod.name}: cleanup DEL failed: {exc}")

    def show_pods(self, pods: list[Pod]) -> None:
        from sriovkit.output import format_table

        self.heading("4. The pods' interfaces, and what the PF's embedded switch holds for their VFs")
        rows = []
        for pod in pods:
            link = self.context.netlink.find_link("net1", pod.netns)
            vf = self._vf_settings(pod.device)
            rows.append([pod.name, pod.device, "net1", link.mac if link else None,
                         ",".join(self.context.netlink.addresses("net1", pod.netns)),
                         "up" if link and link.up else "down", vf.vlan, _onoff(vf.spoofchk), _onoff(vf.trust)])
        self.say(format_table(["POD", "VF", "IFACE", "MAC", "ADDRESS", "STATE", "VLAN", "SPOOFCHK", "TRUST"], rows))

    def ping(self, src: Pod, dst: Pod) -> None:
        from sriovkit.netlink.ping import ping

        rtts = ping(src.netns, dst.ip, count=3, timeout_s=1.0)
        shown = ", ".join("lost" if r is None else f"{r * 1000:.2f} ms" for r in rtts)
        received = sum(1 for r in rtts if r is not None)
        self.say(f"\nping {src.name} -> {dst.name} ({dst.ip}): {received}/{len(rtts)} replies ({shown})")
        if not received:
            raise DemoStepFailed(f"{src.name} cannot reach {dst.name}")

    def show_returned(self, pods: list[Pod]) -> None:
        from sriovkit.output import format_table

        rows = []
        for pod in pods:
            vf = self._vf_settings(pod.device)
            rows.append([pod.device, self.context.netlink.device_netdev(pod.device), vf.vlan, _onoff(vf.spoofchk),
                         _onoff(vf.trust), "yes" if not any(self.state_dir.glob("*.json")) else "no"])
        self.say(format_table(["VF", "HOST INTERFACE", "VLAN", "SPOOFCHK", "TRUST", "CNI STATE GONE"], rows))

    def show_metrics(self) -> None:
        import urllib.request

        url = f"http://127.0.0.1:{self.metrics_server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            lines = reply.read().decode().splitlines()
        wanted = ("sriovkit_cni_operations_total", "sriovkit_device_allocations_total", "sriovkit_pool_devices")
        self.heading(f"7. Agent metrics ({url}, excerpt)")
        self.say("\n".join(line for line in lines if line.startswith(wanted)))

    # -- helpers ------------------------------------------------------------------------------
    def heading(self, text: str) -> None:
        self.say(f"\n== {text}")

    def _vf_settings(self, pci_address: str) -> VfSettings:
        vf = self.host_vf(pci_address)
        return self.context.netlink.vf_settings(vf[0], vf[1])

    def host_vf(self, pci_address: str) -> tuple[str, int]:
        for dev in self.host.devices():
            if dev.pci_address == pci_address and dev.pf_address is not None and dev.vf_index is not None:
                pf_number = next(n for n in range(len(self.pfs)) if self.host.pf_address(n) == dev.pf_address)
                return self.pfs[pf_number], dev.vf_index
        raise LookupError(pci_address)


def _device_from_pod_resources(socket_path: Path, pod: str) -> str:
    """The VF the kubelet assigned to `pod`, asked the way Multus asks: podresources/v1 Get."""
    from sriovkit.kubeapi.podresources import PodResourcesClient

    devices = PodResourcesClient(socket_path, timeout_s=5).devices("default", pod, RESOURCE)
    if not devices:
        raise LookupError(f"podresources has no {RESOURCE} device for {pod}")
    return devices[0]


def _remove_netns(path: str) -> None:
    from pyroute2 import netns

    if os.path.exists(path):
        netns.remove(os.path.basename(path))


def _leftovers(tag: str, interfaces: set[str], workdir: str) -> list[str]:
    from pyroute2 import IPRoute

    found = [f"netns {name}" for name in os.listdir(NETNS_DIR) if f"-{tag}-" in name] if os.path.isdir(
        NETNS_DIR) else []
    with IPRoute() as ipr:
        found += [f"interface {name}" for link in ipr.get_links()
                  if (name := link.get_attr("IFLA_IFNAME")) in interfaces or name.startswith(f"dm{tag}")]
    if os.path.exists(workdir):
        found.append(workdir)
    return found


def _onoff(value: bool) -> str:
    return "on" if value else "off"
