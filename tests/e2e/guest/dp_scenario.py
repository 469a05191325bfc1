"""Guest side of scenarios 2 and 7: the node agent and the kubelet simulator on real igb VFs.

    python dp_scenario.py OUT_DIR CONFIG_JSON

Runs in the VM, where Python is ~9x slower, so one process does it all: the kubelet simulator and
the agent's device plugins in-process, on the real sysfs (host root /). It only acts and records
(JSON files under OUT_DIR); the host-side test asserts. VF counts were set up by the shell script.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sriovkit.agent.node import NodeAgent
from sriovkit.deviceplugin.manager import DevicePluginSettings
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet


def devices(kubelet: Kubelet) -> dict[str, dict[str, Any]]:
    return {res: {i: {"health": s.health, "numa": list(s.numa_nodes)} for i, s in devs.items()}
            for res, devs in kubelet.resources().items()}


def write(out: Path, name: str, data: Any) -> None:
    (out / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True))
    print(f"[dp] recorded {name}", flush=True)


def main(out: Path, config: Path) -> int:
    resources = [r["resourceName"] for r in json.loads(config.read_text())["resourceList"]]
    work = Path(tempfile.mkdtemp(prefix="dp", dir="/tmp"))
    kubelet = Kubelet(work / "dp")
    kubelet.start()
    agent = NodeAgent(DevicePluginSettings(config_file=config, sysfs=Sysfs(Path("/")), proc_root="/proc",
                                           device_plugin_dir=work / "dp", devinfo_dir=work / "devinfo",
                                           netlink_events=True))
    started = time.monotonic()
    agent.start()
    try:
        for name in resources:
            kubelet.wait_for_devices(f"intel.com/{name}", timeout=60)
        write(out, "registered", {"seconds": time.monotonic() - started,
                                  "registrations": [r.resource for r in kubelet.registrations],
                                  "devices": devices(kubelet)})
        allocations = {}
        for name in resources:
            resource = f"intel.com/{name}"
            count = 2 if "spread" in name or "packed" in name else 1
            response = kubelet.allocate(f"pod-{name}", "app", {resource: count})[resource]
            chosen = kubelet.assignments[("default", f"pod-{name}", "app")].devices[resource]
            allocations[resource] = {"devices": chosen, "envs": dict(response.envs),
                                     "device_nodes": [d.host_path for d in response.devices]}
        write(out, "allocated", allocations)
        vf_removal(out, kubelet)
    finally:
        agent.stop()
        kubelet.stop()
    return 0


def vf_removal(out: Path, kubelet: Kubelet) -> None:
    """Lower eth0's VF count 6 -> 2 (through 0, as the kernel wants) and time how long until the
    kubelet sees VFs 2-5 gone or unhealthy."""
    pf = Path("/sys/class/net/eth0/device")
    removed = [Path(pf / f"virtfn{i}").resolve().name for i in (2, 3, 4, 5)]
    before = devices(kubelet)
    t0 = time.monotonic()
    (pf / "sriov_numvfs").write_text("0")
    (pf / "sriov_numvfs").write_text("2")

    def gone() -> bool:
        now = devices(kubelet)
        return all(not any(v in devs and devs[v]["health"] == "Healthy" for devs in now.values()) for v in removed)

    seen = kubelet.wait_for(lambda _: gone(), timeout=30)
    elapsed = time.monotonic() - t0
    time.sleep(3)  # let the VFs that came back settle in
    write(out, "removed", {"removed": removed, "seen": seen, "seconds": elapsed, "before": before,
                           "after": devices(kubelet)})


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
