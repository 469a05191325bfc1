"""`sriovctl agent`: the node agent, until SIGTERM."""

from __future__ import annotations

import argparse
import os
from functools import partial
from typing import TYPE_CHECKING

from sriovkit import logs, nodepaths

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sriovkit.agent.metrics import AgentMetrics
    from sriovkit.agent.node import Component, NodeAgent
    from sriovkit.cni.context import CniContext
    from sriovkit.dra.driver import DraDriver
    from sriovkit.host.sysfs import Sysfs
    from sriovkit.provision.reconcile import PolicyReconciler


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="run the node agent: a device plugin per resource pool, until SIGTERM")
    p.add_argument("--config-file", help="the device plugin's config.json (reloaded on change)")
    p.add_argument("--policy", help="a node policy (see `sriovctl provision`) instead of --config-file: the agent "
                   "provisions VFs as it says, at start and on change, and serves the pools it defines")
    p.add_argument("--policy-pools-file", default=nodepaths.POLICY_POOLS_FILE,
                   help="where the pools derived from --policy are written (a config.json)")
    p.add_argument("--pod-resources-socket", default=nodepaths.POD_RESOURCES_SOCKET,
                   help="the kubelet's podresources API: which VFs pods hold (never removed by --policy)")
    p.add_argument("--resource-prefix", default=nodepaths.RESOURCE_PREFIX, help="prefix for resources without one")
    p.add_argument("--strict-config", action="store_true",
                   help="refuse a config.json (or --policy) with what upstream ignores (unknown fields, selectors "
                        "that match nothing) instead of warning")
    p.add_argument("--host-root", default=os.environ.get("SRIOVKIT_HOST_ROOT", "/"),
                   help="root of the node's filesystem: sysfs at ROOT/sys, procfs at ROOT/proc "
                   "(env SRIOVKIT_HOST_ROOT)")
    p.add_argument("--device-plugin-dir", default=nodepaths.DEVICE_PLUGIN_DIR,
                   help="the kubelet's device-plugin directory (kubelet.sock and the plugins' sockets)")
    p.add_argument("--plugin-watcher", action="store_true",
                   help="register through the kubelet's plugin watcher instead of kubelet.sock")
    p.add_argument("--plugins-registry-dir", default=nodepaths.PLUGINS_REGISTRY_DIR,
                   help="where the plugin watcher looks for sockets (with --plugin-watcher, and for --dra)")
    p.add_argument("--devinfo-dir", default=nodepaths.DEVINFO_DIR,
                   help="where device-info files (Device Information Spec 1.1.0) are written")
    p.add_argument("--use-cdi", action="store_true", help="hand devices over as CDI devices instead of device nodes")
    p.add_argument("--cdi-dir", default=nodepaths.CDI_DIR,
                   help="where CDI spec files are written (with --use-cdi, and for --dra)")
    p.add_argument("--cni-socket", default=nodepaths.CNI_SOCKET,
                   help="serve the `sriov` CNI shim on this unix socket (mode 0600; '' = do not serve)")
    p.add_argument("--cni-state-dir", default=nodepaths.CNI_STATE_DIR,
                   help="where CNI attachment records and per-VF locks live (shared with the shim's fallback)")
    p.add_argument("--cni-devinfo-dir", default=nodepaths.CNI_DEVINFO_DIR,
                   help="runtimeConfig.CNIDeviceInfoFile is written only inside this directory (Multus' default)")
    p.add_argument("--cni-log-dir", default=nodepaths.CNI_LOG_DIR,
                   help="a network config's logFile is written only inside this directory")
    p.add_argument("--cni-gc-seconds", type=float, default=0.0, metavar="SECONDS",
                   help="at start and every SECONDS, release the CNI attachments whose pod sandbox the container "
                   "runtime (--cri-socket) no longer knows and whose network namespace is gone, with DEL's steps: "
                   "VFs whose DEL never came (0 = never; a runtime that cannot be asked = nothing released)")
    p.add_argument("--cni-max-concurrent", type=int, default=16, help="CNI operations served at once")
    p.add_argument("--cni-caller-root-link", default="",
                   help="reach CNI_NETNS, CNI_PATH (IPAM plugins) and device-info files through the root directory "
                   "each shim sends, linked at this path in the agent's own filesystem: for a pod without the "
                   "host's /var/run/netns and /opt/cni/bin (upstream's device-plugin DaemonSet); '' = paths as given")
    p.add_argument("--metrics-address", default="127.0.0.1:9808",
                   help="HOST:PORT of /metrics, /healthz (alive) and /readyz (config loaded, pools registered, "
                   "CNI socket serving) (default loopback; '' = no endpoint)")
    p.add_argument("--hotplug", action="store_true",
                   help="also run the hot-plug controller: secondary networks added to and removed from running "
                   "pods as their k8s.v1.cni.cncf.io/networks annotation changes (docs/hotplug.md)")
    _add_hotplug_arguments(p)
    _add_dra_arguments(p)
    logs.add_arguments(p)
    p.set_defaults(func=_agent)


def _add_hotplug_arguments(p: argparse.ArgumentParser) -> None:
    from sriovkit.commands.hotplug import add_arguments

    add_arguments(p.add_argument_group("hot-plug (with --hotplug; --host-root and --pod-resources-socket "
                                       "apply too; with --kubeconfig or in a pod, and --node-name, a "
                                       "rejected config reload is also an Event on the Node)"), in_agent=True)


def _add_dra_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("DRA driver (with --dra; --kubeconfig, --node-name, --plugins-registry-dir, --cdi-dir "
                             "and --devinfo-dir apply too)")
    g.add_argument("--dra", action="store_true",
                   help="also serve the resources whose config entry says \"servedBy\": \"dra\" as a DRA driver "
                   "(ResourceSlices, kubelet DRA plugin API; docs/dra.md)")
    g.add_argument("--dra-driver-name", default=nodepaths.DRA_DRIVER_NAME,
                   help="the driver's name: DeviceClasses select it, attributes are under it")
    g.add_argument("--dra-plugins-dir", default=nodepaths.KUBELET_PLUGINS_DIR,
                   help="the kubelet's plugins directory: dra.sock is served in <this>/<driver name>/")
    g.add_argument("--dra-state-dir", default=nodepaths.DRA_STATE_DIR,
                   help="where the checkpoint of prepared claims is kept (must survive agent restarts)")
    g.add_argument("--dra-taint-unhealthy", action="store_true",
                   help="publish unhealthy VFs with a NoSchedule device taint instead of withdrawing them "
                   "(needs the API server's DRADeviceTaints feature)")
    g.add_argument("--dra-node-root", default="/",
                   help="the node's root as the container runtime sees it: the CDI specs of claims name "
                   "device nodes (/dev/vfio/<group>, ...) under it (default /; a simulated host's tree)")


def _dra_driver(args: argparse.Namespace, agent: NodeAgent) -> DraDriver:
    import re
    from pathlib import Path

    from sriovkit.dra.driver import DraDriver, DraSettings
    from sriovkit.dra.kube import KubernetesDraApi
    from sriovkit.errors import UserError
    from sriovkit.kubeclient import from_kubeconfig

    problems = []
    # the API server's rule for a DRA driver name: a DNS subdomain of at most 63 characters
    dns = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    if len(args.dra_driver_name) > 63 or not re.fullmatch(dns, args.dra_driver_name):
        problems.append(f"--dra-driver-name {args.dra_driver_name}: must be a DNS subdomain of at most 63 "
                        "characters, e.g. sriovnetwork.k8snetworkplumbingwg.io")
    if not os.path.isabs(args.dra_node_root):
        problems.append(f"--dra-node-root {args.dra_node_root}: must be an absolute path")
    if not args.node_name:
        problems.append("--node-name: required with --dra (or env NODE_NAME)")
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        problems.append(f"--kubeconfig {args.kubeconfig}: no such file")
    if not args.kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        problems.append("--kubeconfig: required with --dra outside a cluster (the driver reads ResourceClaims "
                        "and publishes ResourceSlices)")
    if problems:
        raise UserError(problems)
    api = from_kubeconfig(lambda kubeconfig: KubernetesDraApi(kubeconfig=kubeconfig), args.kubeconfig)
    from sriovkit.commands.ports import DriverBinderFor, fault_hook_from_env

    settings = DraSettings(node_name=args.node_name, driver_name=args.dra_driver_name,
                           plugins_registry_dir=Path(args.plugins_registry_dir),
                           plugins_dir=Path(args.dra_plugins_dir), state_dir=Path(args.dra_state_dir),
                           cdi_dir=Path(args.cdi_dir), devinfo_dir=Path(args.devinfo_dir),
                           taint_unhealthy=args.dra_taint_unhealthy, node_root=Path(args.dra_node_root),
                           # crash tests only: honoured on a simulated host, never on a real node's /
                           fault_hook=fault_hook_from_env(os.environ, args.host_root))
    return DraDriver(settings, agent.device_plugins, api, drivers=DriverBinderFor(agent.device_plugins.settings.sysfs))


def _agent(args: argparse.Namespace) -> int:
    import functools
    from pathlib import Path

    from sriovkit.agent.in_use import attached_by_cni
    from sriovkit.agent.metrics import AgentMetrics
    from sriovkit.agent.node import NodeAgent
    from sriovkit.cni.pools import pools_path
    from sriovkit.commands.ports import kernel_link_events
    from sriovkit.deviceplugin.manager import DevicePluginSettings
    from sriovkit.errors import UserError
    from sriovkit.host.sysfs import Sysfs
    from sriovkit.resources.config import ConfigError, check_resource_prefix

    logs.setup(args.log_level, args.log_format)
    check_resource_prefix("--resource-prefix", args.resource_prefix)
    if bool(args.config_file) == bool(args.policy):
        raise UserError("give one of --config-file (pools) and --policy (VFs and pools)")
    sysfs = Sysfs(Path(args.host_root))
    if not os.path.isdir(sysfs.pci_devices):
        raise UserError(f"--host-root {args.host_root}: no PCI devices directory at {sysfs.pci_devices}")
    settings = DevicePluginSettings(
        config_file=Path(args.config_file or args.policy_pools_file),
        resource_prefix=args.resource_prefix,
        sysfs=sysfs,
        proc_root=os.path.join(args.host_root, "proc"),
        device_plugin_dir=Path(args.device_plugin_dir),
        plugins_registry_dir=Path(args.plugins_registry_dir) if args.plugin_watcher else None,
        devinfo_dir=Path(args.devinfo_dir),
        use_cdi=args.use_cdi,
        cdi_dir=Path(args.cdi_dir),
        netlink_events=kernel_link_events(args.host_root),
        strict_config=args.strict_config,
        pools_file=pools_path(args.cni_state_dir),  # the CNI never picks a pooled VF itself (cni.pick)
        held_devices=functools.partial(attached_by_cni, args.cni_state_dir) if args.cni_socket else None,
    )
    hotplug = _hotplug_controller(args) if args.hotplug else None  # its flags checked before the node changes
    metrics = AgentMetrics()
    agent = NodeAgent(settings, metrics=metrics)
    dra = _dra_driver(args, agent) if args.dra else None
    listeners = _cni_and_metrics(agent, args, metrics, observers=[dra.cni_observer] if dra is not None else [])
    try:
        # another agent's sockets and port, before this one changes anything (VFs included)
        agent.check_conflicts([*listeners, *([dra] if dra is not None else [])])
    except ConfigError:
        pass  # reported below, where the agent starts
    except OSError as exc:
        raise UserError(_start_failure(exc)) from None
    reconciler = None
    if args.policy:
        reconciler = _policy_reconciler(args, sysfs, before_apply=agent.device_plugins.poll_once)
        agent.add(reconciler)
    if dra is not None:
        agent.add(dra)  # after the device plugin: it reads its pools
    for listener in listeners:
        agent.add(listener)
    _add_node_events(agent, args, reconciler)
    if hotplug is not None:
        agent.add(hotplug)  # after the CNI socket: a hot-plugged `sriov` network is served through it
    try:
        agent.run_until_signal()
    except ConfigError as exc:
        raise UserError(exc.problems) from None
    except OSError as exc:  # e.g. a socket directory we may not write
        raise UserError(_start_failure(exc)) from None
    return 0


def _start_failure(exc: OSError) -> str:
    from sriovkit.unixsocket import SocketInUseError

    if isinstance(exc, SocketInUseError):
        return f"cannot start the agent: {exc}"
    where = f"{exc.filename}: " if exc.filename else ""
    return f"cannot start the agent: {where}{exc.strerror or exc}"


def _hotplug_controller(args: argparse.Namespace) -> Component:
    from sriovkit.commands.hotplug import controller_from_args

    return controller_from_args(args, in_agent=True)


def _policy_reconciler(args: argparse.Namespace, sysfs: Sysfs, *,
                       before_apply: Callable[[], None]) -> PolicyReconciler:
    """Provision once now (the device plugin starts on the pools this publishes), then on change."""
    from pathlib import Path

    from sriovkit.agent.in_use import devices_in_use
    from sriovkit.commands.ports import provisioner_for
    from sriovkit.errors import UserError
    from sriovkit.provision.policy import PolicyError, load_policy
    from sriovkit.provision.reconcile import PolicyReconciler, PolicySettings

    try:
        load_policy(args.policy)
    except PolicyError as exc:
        raise UserError(exc.problems) from None
    socket = Path(args.pod_resources_socket) if args.pod_resources_socket else None
    dra_state = Path(args.dra_state_dir) if args.dra else None  # VFs of prepared DRA claims stay too
    reconciler = PolicyReconciler(
        PolicySettings(policy_file=Path(args.policy), pools_file=Path(args.policy_pools_file), sysfs=sysfs,
                       proc_root=os.path.join(args.host_root, "proc"), resource_prefix=args.resource_prefix,
                       strict=args.strict_config),
        provisioner=provisioner_for(sysfs),
        in_use=lambda: devices_in_use(socket, args.cni_state_dir, dra_state_dir=dra_state))
    reconciler.reconcile()
    # from now on pools are being served: let the device plugin withdraw them before VFs change
    reconciler.before_apply = before_apply
    return reconciler


def _cni_and_metrics(agent: NodeAgent, args: argparse.Namespace, metrics: AgentMetrics, *,
                     observers: list[Callable[[Mapping[str, str], bytes, bytes, int], None]]) -> list[Component]:
    """The CNI socket server and the metrics endpoint the flags ask for, built (nothing bound yet);
    `observers` are told every CNI call and its answer (the DRA driver's networkData)."""
    from sriovkit.agent.cni_service import CniService, CniWarmUp
    from sriovkit.agent.metrics import MetricsServer
    from sriovkit.commands.ports import agent_cni_context, prepare_cni
    from sriovkit.errors import UserError
    from sriovkit.shim.server import CniSocketServer

    listeners: list[Component] = []
    if args.cni_max_concurrent < 1:
        raise UserError(f"--cni-max-concurrent {args.cni_max_concurrent}: must be at least 1")
    if args.cni_socket:
        from sriovkit.shim.callerroot import CallerRoot

        link = args.cni_caller_root_link
        if link and not os.path.isabs(link):
            raise UserError(f"--cni-caller-root-link {link}: must be an absolute path")
        context = agent_cni_context(args.host_root, state_dir=args.cni_state_dir, caller_root=link,
                                    devinfo_dir=args.cni_devinfo_dir, log_dir=args.cni_log_dir)
        listeners.append(CniSocketServer(args.cni_socket, CniService(context, metrics, observers),
                                         max_concurrent=args.cni_max_concurrent,
                                         caller_root=CallerRoot(link) if link else None))
        listeners.append(CniWarmUp(partial(prepare_cni, context)))
        if args.cni_gc_seconds:
            listeners.append(_forgotten_attachments(args, context))
    elif args.cni_gc_seconds:
        raise UserError("--cni-gc-seconds: needs --cni-socket (the agent releases what its CNI attached)")
    if args.metrics_address:
        _, sep, port = args.metrics_address.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise UserError(f"--metrics-address {args.metrics_address}: must be HOST:PORT, e.g. 127.0.0.1:9808")
        listeners.append(MetricsServer(args.metrics_address, metrics, agent.healthy, agent.readiness_problems))
    return listeners


def _forgotten_attachments(args: argparse.Namespace, context: CniContext) -> Component:
    from sriovkit.agent.forgotten import ForgottenAttachments
    from sriovkit.errors import UserError
    from sriovkit.hotplug.cri import CriClient

    if args.cni_gc_seconds < 0:
        raise UserError(f"--cni-gc-seconds {args.cni_gc_seconds:g}: must be 0 (never) or positive")
    if not args.cri_socket:
        raise UserError("--cni-gc-seconds: needs --cri-socket (the runtime that says which sandboxes exist)")
    cri = CriClient(args.cri_socket)
    return ForgottenAttachments(context, cri.sandbox_ids, period_s=args.cni_gc_seconds,
                                runtime=f"the runtime at {args.cri_socket}")


def _add_node_events(agent: NodeAgent, args: argparse.Namespace, reconciler: PolicyReconciler | None) -> None:
    """Where the agent can reach the API server (--kubeconfig, or a pod's service account) and knows
    its node, a config reload that fails is also an Event on the Node (`kubectl describe node`)."""
    if not args.node_name or not (args.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST")):
        return  # checked before importing: an agent that posts no events loads no client modules
    import logging

    from sriovkit.agent.events import NodeEvents, client_create
    from sriovkit.kubeclient import KUBE_EXTRA_HINT, from_kubeconfig, have_client, in_cluster

    if not (args.kubeconfig or in_cluster(os.environ)):
        return
    if not have_client():  # optional: the log and /readyz still say it
        logging.getLogger(__name__).warning("no Events on the Node: %s", KUBE_EXTRA_HINT)
        return
    create = from_kubeconfig(client_create, args.kubeconfig)
    events = NodeEvents(args.node_name, create=create)
    agent.add(events)
    agent.device_plugins.on_reload_failure = lambda problems: events.post(
        "Warning", "ConfigReloadFailed",
        f"sriovkit agent: {agent.device_plugins.settings.config_file} rejected, the previous config keeps "
        f"running: {problems}")
    if reconciler is not None:  # with --policy: a policy the node cannot be made to match
        reconciler.on_failure = lambda problem: events.post(
            "Warning", "PolicyNotApplied", f"sriovkit agent: policy {args.policy} not applied: {problem}")
