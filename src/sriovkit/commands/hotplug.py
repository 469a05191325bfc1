"""`sriovctl hotplug`: the hot-plug controller on its own, until SIGTERM.

`sriovctl agent --hotplug` runs the same controller inside the node agent (`add_arguments` and
`controller_from_args` with `in_agent=True`).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from sriovkit import logs, nodepaths, signals

if TYPE_CHECKING:
    from sriovkit.hotplug.controller import HotplugController


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hotplug", help="add and remove secondary interfaces of running pods on this node")
    add_arguments(p)
    logs.add_arguments(p)
    p.set_defaults(func=_hotplug)


def add_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup, *, in_agent: bool = False) -> None:
    """The controller's flags. `in_agent`: for `sriovctl agent --hotplug`, which has its own --host-root
    and --pod-resources-socket (same meaning, so not added twice). The controller's state dir and
    resync are --hotplug-state-dir and --hotplug-resync-seconds everywhere (a bare --state-dir would
    be ambiguous beside the agent's --cni-state-dir); `sriovctl hotplug` also takes the first
    spellings, --state-dir and --resync-seconds."""
    p.add_argument("--kubeconfig", help="kubeconfig file (default: the pod's service account, in-cluster)")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME"),
                   help="this node's name: only its pods are watched (env NODE_NAME)")
    p.add_argument("--cri-socket", default=nodepaths.CRI_SOCKET,
                   help="the container runtime's CRI socket (runtime.v1)")
    p.add_argument("--cni-bin-dir", default=nodepaths.CNI_BIN_DIR, help="CNI plugin directories, ':'-separated")
    if not in_agent:
        p.add_argument("--pod-resources-socket", default=nodepaths.POD_RESOURCES_SOCKET,
                       help="the kubelet's podresources socket (devices of NADs with a resourceName)")
    p.add_argument("--hotplug-state-dir", *(() if in_agent else ("--state-dir",)), dest="state_dir",
                   metavar="DIR", default=nodepaths.HOTPLUG_STATE_DIR, help="the controller's record of attachments")
    p.add_argument("--kubelet-root", default=nodepaths.KUBELET_ROOT, help="the kubelet's root (pods' emptyDir volumes)")
    p.add_argument("--ovs-run-dir", default=nodepaths.OVS_RUN_DIR, help="where vhost_sockets/<uid> mounts go")
    p.add_argument("--no-vhostuser", action="store_true", help="do not bind-mount vhost-user socket directories")
    if not in_agent:
        p.add_argument("--host-root", default=os.environ.get("SRIOVKIT_HOST_ROOT", "/"),
                       help="node filesystem root passed to the sriov plugin as SRIOVKIT_HOST_ROOT")
    p.add_argument("--hotplug-resync-seconds", *(() if in_agent else ("--resync-seconds",)), dest="resync_seconds",
                   metavar="SECONDS", type=float, default=60.0, help="how often every pod is looked at again")


def controller_from_args(args: argparse.Namespace, *, in_agent: bool = False) -> HotplugController:
    """The `HotplugController` the flags describe (also for the node agent to `add`: `in_agent` as
    given to `add_arguments`, so problems name the flags the user typed)."""
    from pathlib import Path

    from sriovkit.errors import UserError
    from sriovkit.kubeclient import from_kubeconfig, require_client

    require_client("--hotplug" if in_agent else "sriovctl hotplug")
    from sriovkit.hotplug.cniexec import CniRuntime, in_bin_dir
    from sriovkit.hotplug.controller import HotplugController, HotplugSettings
    from sriovkit.hotplug.cri import CriClient
    from sriovkit.hotplug.kube import KubernetesApi
    from sriovkit.hotplug.vhostuser import VhostUserDirs
    from sriovkit.kubeapi.podresources import PodResourcesClient

    problems = []
    if not args.node_name:
        problems.append("--node-name: required (or env NODE_NAME)")
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        problems.append(f"--kubeconfig {args.kubeconfig}: no such file")
    bin_dirs = in_bin_dir(args.cni_bin_dir)
    problems += [f"--cni-bin-dir: {d} is not a directory" for d in bin_dirs if not os.path.isdir(d)]
    if args.resync_seconds <= 0:
        flag = "--hotplug-resync-seconds" if in_agent else "--resync-seconds"  # as sriovctl hotplug first named it
        problems.append(f"{flag} {args.resync_seconds}: must be positive")
    if problems:
        raise UserError(problems)
    api = from_kubeconfig(lambda kubeconfig: KubernetesApi(args.node_name, kubeconfig=kubeconfig), args.kubeconfig)
    settings = HotplugSettings(
        node_name=args.node_name, state_dir=Path(args.state_dir),
        cni=CniRuntime(bin_dirs, extra_env={"SRIOVKIT_HOST_ROOT": args.host_root}),
        vhostuser=None if args.no_vhostuser else VhostUserDirs(Path(args.kubelet_root), Path(args.ovs_run_dir)),
        resync_s=args.resync_seconds)
    pod_resources = PodResourcesClient(args.pod_resources_socket) if args.pod_resources_socket else None
    return HotplugController(settings, api=api, cri=CriClient(args.cri_socket), pod_resources=pod_resources)


def _hotplug(args: argparse.Namespace) -> int:
    logs.setup(args.log_level, args.log_format)
    controller = controller_from_args(args)
    signals.run_until_signal(controller)
    return 0
