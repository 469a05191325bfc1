"""`sriovctl sim create|destroy`: the argument parsing; what they do is `sriovkit.sim.command`'s."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sim", help="build or remove a simulated host tree")
    sim_sub = p.add_subparsers(dest="sim_command", required=True, metavar="ACTION")
    c = sim_sub.add_parser("create", help="create a simulated host under DIR from a topology spec")
    c.add_argument("dir")
    c.add_argument("--spec", required=True, help="topology spec (JSON or YAML)")
    c.add_argument("--veth", action="store_true", help="also create real interfaces: a bridge per PF, a veth per VF")
    c.set_defaults(func=_create)
    d = sim_sub.add_parser("destroy", help="remove a simulated host tree (and its interfaces) made by 'sim create'")
    d.add_argument("dir")
    d.set_defaults(func=_destroy)


def _create(args: argparse.Namespace) -> int:
    from sriovkit.sim.command import cmd_sim_create  # pydantic, yaml: only when run

    return cmd_sim_create(args)


def _destroy(args: argparse.Namespace) -> int:
    from sriovkit.sim.command import cmd_sim_destroy

    return cmd_sim_destroy(args)
