"""The DRA driver under the kubelet stand-in and the API server stand-in, on simulated hosts.

For each size (VFs, all in one `servedBy: dra` resource, 128 per PF), the agent's device-plugin
manager and DRA driver run in this process; `sriovkit.kubesim` registers the driver through its
plugin watcher and calls it over gRPC on dra.sock; the slices go to `sriovkit.kubesim.apiserver`
through the real `kubernetes` client. The bench prints:

- start to registered: from starting the driver to the kubelet's registration of it;
- start to published: until every PF's ResourceSlice is on the API server;
- prepare / unprepare p50 and p99 over N claims of one VF each (the claim read from the API
  server, checkpoint written, CDI spec and device-info file written, then all removed), once
  keeping the VF's driver and once binding vfio-pci and restoring it;
- health: a PF's operstate written down/up until the kubelet's health stream shows its VFs'
  new state (median over M flips).

No peer: dra-driver-sriov, the only other SR-IOV DRA driver, has no release and needs a real
kubelet and API server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sriovkit.commands.ports import provisioner_for
from sriovkit.deviceplugin.manager import DevicePluginManager, DevicePluginSettings
from sriovkit.dra.driver import DraDriver, DraSettings
from sriovkit.dra.kube import KubernetesDraApi
from sriovkit.dra.slices import device_name, pool_name
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from sriovkit.kubesim.apiserver import CLAIMS, SLICES, FakeKubeApi
from sriovkit.output import format_table
from sriovkit.sim import host as sim
from sriovkit.sim.host import set_operstate

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
NODE = "bench-node"
VFS_PER_PF = 128


def _ms(samples: list[float], q: float) -> str:
    ordered = sorted(samples)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


def _claim(api: FakeKubeApi, pf: str, vf: str, driver: str) -> tuple[str, str, str]:
    uid = str(uuid.uuid4())
    params = {"apiVersion": f"{DRIVER}/v1alpha1", "kind": "VfConfig", "driver": driver}
    api.put(CLAIMS, {"metadata": {"namespace": "default", "name": f"c-{uid[:8]}", "uid": uid}, "status": {
        "allocation": {"devices": {
            "results": [{"request": "vf", "driver": DRIVER, "pool": pool_name(NODE, pf), "device": device_name(vf)}],
            "config": [{"source": "FromClaim", "requests": ["vf"], "opaque": {"driver": DRIVER,
                                                                               "parameters": params}}]}},
        "reservedFor": [{"resource": "pods", "name": "p", "uid": "pod"}]}})
    return "default", uid, f"c-{uid[:8]}"


def claim_latencies(api: FakeKubeApi, kubelet: Kubelet, pf: str, vfs: list[str], mode: str,
                    claims: int) -> tuple[list[float], list[float]]:
    prep: list[float] = []
    unprep: list[float] = []
    for i in range(claims):
        ref = _claim(api, pf, vfs[i % len(vfs)], mode)
        t = time.perf_counter()
        answer = kubelet.prepare_claims(DRIVER, [ref])[ref[1]]
        prep.append(time.perf_counter() - t)
        assert not answer.error, answer.error
        t = time.perf_counter()
        gone = kubelet.unprepare_claims(DRIVER, [ref])[ref[1]]
        unprep.append(time.perf_counter() - t)
        assert not gone.error, gone.error
    return prep, unprep


def health_latencies(kubelet: Kubelet, sysfs: Sysfs, probe: tuple[str, str], flips: int) -> list[float]:
    samples = []
    for i in range(flips):
        up = i % 2 == 1
        want = "HEALTHY" if up else "UNHEALTHY"
        t = time.perf_counter()
        set_operstate(sysfs, "ens0f0", "up" if up else "down")
        kubelet.wait_for_dra_health(DRIVER, lambda h, w=want: h.get(probe) == w, timeout=30)
        samples.append(time.perf_counter() - t)
    return samples


def run(num_vfs: int, claims: int, flips: int) -> list[list[str]]:
    root = Path(tempfile.mkdtemp(prefix="drab", dir="/tmp"))
    api = FakeKubeApi()
    api.start()
    kubelet = Kubelet(root / "dp", plugins_registry_dir=root / "reg", watch_interval=0.02)
    kubelet.start()
    manager = driver = None
    try:
        pfs = [{"name": f"ens{i}f0", "numVfs": VFS_PER_PF, "totalVfs": VFS_PER_PF, "numaNode": i % 2,
                "vfDrivers": {"0": "vfio-pci"}} for i in range(num_vfs // VFS_PER_PF)]
        host = sim.create(root / "host", {"pfs": pfs})
        (root / "config.json").write_text(json.dumps({"resourceList": [
            {"resourceName": "vfs", "servedBy": "dra"}]}))
        sysfs = Sysfs(host.root)
        manager = DevicePluginManager(DevicePluginSettings(
            config_file=root / "config.json", sysfs=sysfs, proc_root=str(root / "proc"),
            device_plugin_dir=root / "dp", devinfo_dir=root / "devinfo", poll_interval=0.05))
        driver = DraDriver(DraSettings(node_name=NODE, driver_name=DRIVER, plugins_registry_dir=root / "reg",
                                       plugins_dir=root / "plugins", state_dir=root / "state",
                                       cdi_dir=root / "cdi", devinfo_dir=root / "devinfo"),
                           manager, KubernetesDraApi(kubeconfig=str(api.write_kubeconfig(root / "kubeconfig"))),
                           drivers=provisioner_for(sysfs))
        manager.start()
        t0 = time.perf_counter()
        driver.start()
        kubelet.wait_for_dra(DRIVER, timeout=60)
        registered = time.perf_counter() - t0
        api.wait_for(lambda a: sum(len(o["spec"]["devices"]) for (k, _, _), o in a.objects.items()
                                   if k == SLICES) == num_vfs, timeout=120)
        published = time.perf_counter() - t0
        pf0 = host.pf_address(0)
        vfs = [host.vf_address(0, i) for i in range(1, VFS_PER_PF)]
        timings = {mode or "keep driver": claim_latencies(api, kubelet, pf0, vfs, mode, claims)
                   for mode in ("", "vfio-pci")}
        health = health_latencies(kubelet, sysfs, (pool_name(NODE, pf0), device_name(vfs[0])), flips)
        rows = []
        for mode, (prep, unprep) in timings.items():
            rows.append([str(num_vfs), f"{registered:.2f}", f"{published:.2f}", mode, _ms(prep, 0.5), _ms(prep, 0.99),
                         _ms(unprep, 0.5), _ms(unprep, 0.99), f"{statistics.median(health) * 1000:.0f}"])
        return rows
    finally:
        if driver is not None:
            driver.stop()
        if manager is not None:
            manager.stop()
        kubelet.stop()
        api.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,1024", help="comma-separated VF counts (multiples of 128)")
    parser.add_argument("--claims", type=int, default=50, help="claims prepared and unprepared per mode")
    parser.add_argument("--flips", type=int, default=6, help="PF link flips for the health latency")
    args, _ = parser.parse_known_args()
    header = ["VFS", "REGISTERED S", "PUBLISHED S", "CLAIM CONFIG", "PREPARE P50 MS", "P99", "UNPREPARE P50 MS",
              "P99", "HEALTH MS"]
    rows = [row for size in args.sizes.split(",") for row in run(int(size), args.claims, args.flips)]
    print(format_table(header, rows))
    print(f"(machine: {os.cpu_count()} CPUs; no peer: dra-driver-sriov has no release and needs a real cluster)")


if __name__ == "__main__":
    main()
