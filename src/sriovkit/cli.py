"""`sriovctl`: the operator's command line.

Each subcommand imports what it needs when it runs, so `sriovctl --help` and
the cheap commands start fast. User errors print one line per problem and
exit 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from sriovkit.errors import UserError

EXIT_USAGE = 2
__all__ = ["UserError", "main"]


def _host_root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host-root",
        default=os.environ.get("SRIOVKIT_HOST_ROOT", "/"),
        help="root of the node's filesystem: sysfs at ROOT/sys, device nodes at ROOT/dev "
        "(env SRIOVKIT_HOST_ROOT, default /)",
    )


def _output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sriovctl", description="SR-IOV networking for Kubernetes")
    parser.add_argument("--version", action="version", version=f"sriovctl {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("discover", help="show PFs and VFs found in sysfs")
    _host_root_arg(p)
    _output_arg(p)
    p.set_defaults(func=_lazy("sriovkit.commands.inventory", "cmd_discover"))

    p = sub.add_parser("pools", help="show the resource pools a device plugin config yields")
    p.add_argument("--config-file", required=True, help="the device plugin's config.json")
    p.add_argument("--resource-prefix", default="intel.com", help="prefix for resources without one")
    p.add_argument("--explain", action="store_true", help="say for every device which pool took it, or why none")
    p.add_argument("--strict", action="store_true",
                   help="refuse what upstream ignores (unknown fields, selectors that match nothing): for CI linting")
    _host_root_arg(p)
    _output_arg(p)
    p.set_defaults(func=_lazy("sriovkit.commands.inventory", "cmd_pools"))

    p = sub.add_parser("sim", help="build or remove a simulated host tree")
    sim_sub = p.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    c = sim_sub.add_parser("create", help="create a simulated host under DIR from a topology spec")
    c.add_argument("dir")
    c.add_argument("--spec", required=True, help="topology spec (JSON or YAML)")
    c.add_argument("--veth", action="store_true", help="also create real interfaces: a bridge per PF, a veth per VF")
    c.set_defaults(func=_lazy("sriovkit.sim.command", "cmd_sim_create"))
    d = sim_sub.add_parser("destroy", help="remove a simulated host tree (and its interfaces) made by 'sim create'")
    d.add_argument("dir")
    d.set_defaults(func=_lazy("sriovkit.sim.command", "cmd_sim_destroy"))

    for register in _extra_commands():
        register(sub)
    return parser


def _version() -> str:
    from sriovkit import __version__

    return __version__


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
        return func(args)

    return run


# Modules that add subcommands: each defines `register(subparsers)` and imports
# nothing heavy at module level (the CLI must start fast).
_COMMAND_MODULES: tuple[str, ...] = (
    "sriovkit.shim.command", "sriovkit.provision.command", "sriovkit.agent.command", "sriovkit.commands.demo",
    "sriovkit.hotplug.command", "sriovkit.commands.status", "sriovkit.injector.command", "sriovkit.dra.command",
)


def _extra_commands() -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    import importlib

    return [importlib.import_module(m).register for m in _COMMAND_MODULES]


def main(argv: Sequence[str] | None = None) -> int:
    # Every child we start (IPAM plugins, the shim) is exec'd at once; gRPC's fork handlers
    # would only print "skipping fork() handlers" warnings while its threads are busy.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        for line in exc.lines:
            print(f"sriovctl: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `sriovctl pools --explain | head`: the reader left; say nothing more, and keep Python's
        # exit-time flush of stdout from raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
