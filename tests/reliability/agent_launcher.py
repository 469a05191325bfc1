"""A node agent process for reliability tests: started as a subprocess so a test can SIGKILL it.

    python tests/reliability/agent_launcher.py --host-root R --state-dir S --socket P
        [--kill-after LABEL[@N]]                   # SIGKILL itself there (sriovkit.cni.faults)
        [--config-file C --device-plugin-dir D --work-dir W]   # also the device plugins

Wired as `sriovctl demo` wires the agent: NodeAgent (device plugins, when a config is given),
CniSocketServer serving CniService. Prints "ready <CLOCK_MONOTONIC when it began starting them>"
once every component has started, then runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host-root", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--kill-after", default="")
    p.add_argument("--lock-timeout", type=float, default=20.0)
    p.add_argument("--config-file")
    p.add_argument("--device-plugin-dir")
    p.add_argument("--work-dir")
    p.add_argument("--cni-devinfo-dir", default="/var/run/k8s.cni.cncf.io/devinfo")
    p.add_argument("--cni-log-dir", default="/var/log")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s agent %(levelname)s %(name)s %(message)s")

    from sriovkit.agent.cni_service import CniService
    from sriovkit.agent.metrics import AgentMetrics
    from sriovkit.cni.faults import kill_after
    from sriovkit.commands.ports import agent_cni_context
    from sriovkit.shim.server import CniSocketServer

    metrics = AgentMetrics()
    hook = kill_after(args.kill_after) if args.kill_after else None
    context = agent_cni_context(args.host_root, state_dir=args.state_dir, lock_timeout_s=args.lock_timeout,
                                fault_hook=hook, devinfo_dir=args.cni_devinfo_dir, log_dir=args.cni_log_dir)
    server = CniSocketServer(args.socket, CniService(context, metrics), max_concurrent=32)
    components: list[object] = []
    if args.config_file:
        components.append(_device_plugins(args, metrics))
    components.append(server)
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()  # system-wide clock: the test compares it with the kubelet's
    for component in components:
        component.start()  # type: ignore[attr-defined]
    print(f"ready {started:.6f}", flush=True)
    done.wait()
    for component in reversed(components):
        component.stop()  # type: ignore[attr-defined]


def _device_plugins(args: argparse.Namespace, metrics: object) -> object:
    from sriovkit.agent.node import NodeAgent
    from sriovkit.deviceplugin.manager import DevicePluginSettings
    from sriovkit.host.sysfs import Sysfs

    work = Path(args.work_dir)
    return NodeAgent(DevicePluginSettings(
        config_file=Path(args.config_file), sysfs=Sysfs(Path(args.host_root)),
        proc_root=str(Path(args.host_root) / "proc"), device_plugin_dir=Path(args.device_plugin_dir),
        devinfo_dir=work / "devinfo", cdi_dir=work / "cdi"), metrics=metrics)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
