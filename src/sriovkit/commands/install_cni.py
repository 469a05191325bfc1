"""`sriovctl install-cni`."""

from __future__ import annotations

import argparse

from sriovkit import nodepaths


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("install-cni", help="install the `sriov` CNI executable into a CNI bin directory")
    # one name per concept across subcommands (the agent's and hot-plug's); the first spellings stay as aliases
    p.add_argument("--cni-bin-dir", "--dest", dest="dest", metavar="DIR", default=nodepaths.CNI_BIN_DIR,
                   help=f"CNI bin directory (default {nodepaths.CNI_BIN_DIR}; alias --dest)")
    p.add_argument("--cni-socket", "--agent-socket", dest="agent_socket", metavar="PATH",
                   default=nodepaths.CNI_SOCKET,
                   help="the agent's --cni-socket (alias --agent-socket)")
    p.add_argument("--python-shim", action="store_true",
                   help="install the Python shim (needs --python on the host) instead of the static native one")
    p.add_argument("--binary", default=None,
                   help="the built native shim to install (default $SRIOVKIT_SHIM_BINARY or "
                   "PREFIX/libexec/sriovkit/sriov of this installation)")
    p.add_argument("--python", default="/usr/bin/python3",
                   help="host interpreter for the Python shim (3.8 or newer; with --python-shim)")
    p.add_argument("--fallback-python", default=None,
                   help="interpreter with sriovkit installed, used when the agent is down and it exists on the "
                   "host (default: this one)")
    p.add_argument("--no-fallback", action="store_true", help="fail with a CNI error when the agent is down")
    p.add_argument("--log-file", default="", help="where the shim logs fallbacks (default: stderr)")
    p.add_argument("--host-root", default="", help="the agent's --host-root, used by the fallback path (default: /)")
    p.add_argument("--cni-state-dir", "--state-dir", dest="state_dir", metavar="DIR", default="",
                   help="the agent's --cni-state-dir, used by the fallback path (default: /var/lib/cni/sriov; "
                   "alias --state-dir)")
    p.add_argument("--connect-timeout", type=float, default=2.0,
                   help="seconds to connect and for the agent to take the call (default 2)")
    p.add_argument("--reply-timeout", type=float, default=300.0,
                   help="seconds for the agent's answer once it took the call (default 300)")
    p.add_argument("--devinfo-dir", default="", help="the agent's --cni-devinfo-dir, used by the fallback path "
                   "(default: /var/run/k8s.cni.cncf.io/devinfo)")
    p.add_argument("--log-dir", default="", help="the agent's --cni-log-dir, used by the fallback path "
                   "(default: /var/log)")
    p.set_defaults(func=_install)


def _install(args: argparse.Namespace) -> int:
    from sriovkit.shim.install import ShimSettings, default_fallback_python, install_shim

    fallback = "" if args.no_fallback else (args.fallback_python or default_fallback_python())
    settings = ShimSettings(agent_socket=args.agent_socket, fallback_python=fallback, log_file=args.log_file,
                            interpreter=args.python, host_root=args.host_root, state_dir=args.state_dir,
                            devinfo_dir=args.devinfo_dir, log_dir=args.log_dir,
                            connect_timeout=args.connect_timeout, reply_timeout=args.reply_timeout,
                            native=not args.python_shim)
    path = install_shim(args.dest, settings, binary=args.binary)
    kind = "Python shim" if args.python_shim else "native shim"
    print(f"installed {path} ({kind}, agent socket {args.agent_socket}, fallback {fallback or 'none'})")
    return 0
