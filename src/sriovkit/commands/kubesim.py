"""`sriovctl kubesim`: a kubelet stand-in (device-plugin registration, podresources, DRA), until SIGTERM."""

from __future__ import annotations

import argparse

from sriovkit import logs, signals


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kubesim", help="run a kubelet stand-in (device-plugin registration, podresources)")
    p.add_argument("--device-plugin-dir", required=True, help="where kubelet.sock is served")
    p.add_argument("--pod-resources-socket", help="serve podresources/v1 on this socket")
    p.add_argument("--plugins-registry-dir", help="also watch this directory for plugin-watcher registration")
    logs.add_arguments(p)
    p.set_defaults(func=_kubesim)


def _kubesim(args: argparse.Namespace) -> int:
    from sriovkit.kubesim import Kubelet

    logs.setup(args.log_level, args.log_format)
    kubelet = Kubelet(args.device_plugin_dir, pod_resources_socket=args.pod_resources_socket,
                      plugins_registry_dir=args.plugins_registry_dir)
    signals.run_until_signal(kubelet)
    return 0
