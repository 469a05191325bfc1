"""`sriovctl sim create|destroy`: build or remove a simulated host tree (and its real interfaces)."""

from __future__ import annotations

import argparse
import os

from sriovkit.errors import UserError
from sriovkit.sim import host as sim


def cmd_sim_create(args: argparse.Namespace) -> int:
    try:
        spec = sim.load_spec(args.spec)
    except OSError as exc:
        raise UserError(f"--spec {args.spec}: cannot read: {exc.strerror}") from None
    except sim.SimSpecError as exc:
        raise UserError(exc.problems) from None
    if sim.is_simulated(args.dir):
        raise UserError(f"{args.dir}: already a simulated host; remove it first (sriovctl sim destroy {args.dir}) "
                        "or choose another directory")
    try:
        host = sim.SimulatedHost(args.dir, spec).create()
    except sim.SimSpecError as exc:
        raise UserError(exc.problems) from None
    except OSError as exc:
        raise UserError(f"{args.dir}: cannot create the simulated host: "
                        f"{exc.filename}: {exc.strerror or exc}") from None
    count = sum(1 for _ in host.devices())
    print(f"simulated host at {args.dir}: {len(spec.pfs)} PFs, {count - len(spec.pfs)} VFs")
    if getattr(args, "veth", False):
        _attach_veths(host)
    return 0


def _attach_veths(host: sim.SimulatedHost) -> None:
    from sriovkit.netlink.errors import NetlinkError
    from sriovkit.sim.net import attach_veths

    try:
        network = attach_veths(host)
    except NetlinkError as exc:
        host.destroy()
        raise UserError(f"{host.root}: cannot create interfaces: {exc}") from None
    print(f"interfaces: {len(network.bridges)} bridges, {len(network.ports)} veth pairs")


def cmd_sim_destroy(args: argparse.Namespace) -> int:
    try:
        _remove_interfaces(args.dir)
        sim.destroy(args.dir)
    except sim.SimSpecError as exc:
        raise UserError(exc.problems) from None
    print(f"removed simulated host at {args.dir}")
    return 0


def _remove_interfaces(root: str) -> None:
    """Remove the real interfaces `sim create --veth` made, if any (before the record goes)."""
    from sriovkit.netlink.errors import NetlinkError
    from sriovkit.sim import net as simnet

    if not os.path.exists(root):
        return
    host = sim.open_existing(root)
    if not simnet.has_network(host):
        return
    try:
        simnet.SimNetwork.of(host).destroy()
    except NetlinkError as exc:
        raise UserError(f"{root}: cannot remove interfaces: {exc}") from None
