"""`sriovctl install-cni`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("install-cni", help="install the `sriov` CNI shim into a CNI bin directory")
    p.add_argument("--dest", default="/opt/cni/bin", help="CNI bin directory (default /opt/cni/bin)")
    p.add_argument("--agent-socket", default="/run/sriovkit/cni.sock", help="the agent's CNI socket")
    p.add_argument("--python", default="/usr/bin/python3", help="host interpreter for the shim (3.8 or newer)")
    p.add_argument("--fallback-python", default=None,
                   help="interpreter with sriovkit installed, used when the agent is down (default: this one)")
    p.add_argument("--no-fallback", action="store_true", help="fail with a CNI error when the agent is down")
    p.add_argument("--log-file", default="", help="where the shim logs fallbacks (default: stderr)")
    p.add_argument("--host-root", default="", help="the agent's --host-root, used by the fallback path (default: /)")
    p.add_argument("--state-dir", default="",
                   help="the agent's --cni-state-dir, used by the fallback path (default: /var/lib/cni/sriov)")
    p.set_defaults(func=_install)


def _install(args: argparse.Namespace) -> int:
    from sriovkit.shim.install import ShimSettings, default_fallback_python, install_shim

    fallback = "" if args.no_fallback else (args.fallback_python or default_fallback_python())
    path = install_shim(args.dest, ShimSettings(agent_socket=args.agent_socket, fallback_python=fallback,
                                                log_file=args.log_file, interpreter=args.python,
                                                host_root=args.host_root, state_dir=args.state_dir))
    print(f"installed {path} (agent socket {args.agent_socket}, fallback {fallback or 'none'})")
    return 0
