"""`sriovctl`: the operator's command line.

Each subcommand (in `sriovkit.commands`) imports what it needs when it runs, so
`sriovctl --help` and the cheap commands start fast. User errors print one line per problem and
exit 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from sriovkit.errors import SriovkitError, UserError

EXIT_USAGE = 2
EXIT_FAILURE = 1
__all__ = ["UserError", "main"]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `only` (a module of `_COMMAND_MODULES`): just that module's commands."""
    parser = argparse.ArgumentParser(prog="sriovctl", description="SR-IOV networking for Kubernetes")
    parser.add_argument("--version", action="version", version=f"sriovctl {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for register in _commands(only):
        register(sub)
    return parser


def _version() -> str:
    from sriovkit import __version__

    return __version__


# Every subcommand lives in sriovkit.commands: one module per command (or family) defining
# `register(subparsers)` (its flags) and the function that runs it, which builds the command's ports
# from its flags (its composition root). Module level imports nothing heavy: the CLI must start fast.
# In this order in `sriovctl --help`.
_COMMAND_MODULES: tuple[str, ...] = (
    "inventory", "sim", "install_cni", "provision", "agent", "kubesim", "demo", "hotplug", "status", "injector",
    "claims",
)


# The long-running commands (a node's daemons) and their modules: run as one of these, the process
# builds only that command's parser, so it never holds the other commands' modules (0.5 MiB of the
# agent's memory). A unit test checks each module registers exactly these names.
_DAEMONS: dict[str, str] = {"agent": "agent", "hotplug": "hotplug", "injector": "injector", "kubesim": "kubesim"}


def _commands(only: str | None = None) -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    import importlib

    return [importlib.import_module(f"sriovkit.commands.{m}").register for m in _COMMAND_MODULES
            if only is None or m == only]


def main(argv: Sequence[str] | None = None) -> int:
    # Every child we start (IPAM plugins, the shim) is exec'd at once; gRPC's fork handlers
    # would only print "skipping fork() handlers" warnings while its threads are busy.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_DAEMONS.get(words[0]) if words else None).parse_args(words)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        for line in exc.lines:
            print(f"sriovctl: {line}", file=sys.stderr)
        return EXIT_USAGE
    except SriovkitError as exc:  # a failure sriovkit describes (not a bug): its words, no traceback
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"sriovctl: {line}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `sriovctl pools --explain | head`: the reader left; say nothing more, and keep Python's
        # exit-time flush of stdout from raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
