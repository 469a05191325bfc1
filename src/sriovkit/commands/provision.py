"""`sriovctl provision`: make the node's VFs match a policy file."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("provision", help="create VFs and bind their drivers as a node policy says")
    p.add_argument("--policy", required=True, help="node policy file (YAML or JSON; see docs/provisioning.md)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--strict", action="store_true", help="refuse unknown fields in the policy instead of warning")
    p.add_argument("--allocated", action="append", default=[], metavar="PCI_ADDRESS",
                   help="a VF a pod holds (repeatable): never removed or rebound")
    p.add_argument("--host-root", default=os.environ.get("SRIOVKIT_HOST_ROOT", "/"),
                   help="root of the node's filesystem: sysfs at ROOT/sys, procfs at ROOT/proc; a simulated "
                   "host made by 'sriovctl sim create' is changed through the simulator (env SRIOVKIT_HOST_ROOT)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=_provision)


def _provision(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from sriovkit.commands.ports import provisioner_for
    from sriovkit.errors import UserError
    from sriovkit.host.sysfs import Sysfs
    from sriovkit.provision.apply import ApplyError, apply, read_host_state
    from sriovkit.provision.plan import PlanRefused, plan
    from sriovkit.provision.policy import PolicyError, load_policy

    sysfs = Sysfs(Path(args.host_root))
    if not os.path.isdir(sysfs.pci_devices):
        raise UserError(f"--host-root {args.host_root}: no PCI devices directory at {sysfs.pci_devices}")
    try:
        policy = load_policy(args.policy, strict=args.strict,
                             warn=lambda line: print(f"sriovctl: warning: {line}", file=sys.stderr))
    except PolicyError as exc:
        raise UserError(exc.problems) from None
    state = read_host_state(sysfs, os.path.join(args.host_root, "proc"))
    try:
        steps = plan(policy, state, allocated=args.allocated)
    except PlanRefused as exc:
        raise UserError([f"{args.policy}: {p} (nothing changed)" for p in exc.problems]) from None
    if args.output == "json":
        print(json.dumps({"dryRun": args.dry_run, "steps": steps.as_json()}, indent=2))
    elif not steps:
        print(f"nothing to do: the node already matches {args.policy}")
    elif args.dry_run:
        print(_table(steps.steps))
    if args.dry_run or not steps:
        return 0
    provisioner = provisioner_for(sysfs)
    quiet = args.output == "json"
    try:
        applied = apply(steps, provisioner, sysfs,
                        on_step=None if quiet else lambda s: print(f"applied: {s.describe()}", flush=True))
    except ApplyError as exc:
        print(f"sriovctl: {args.policy}: failed at {exc}", file=sys.stderr)
        return 1
    if not quiet:
        print(f"done: {len(applied)} changes")
    return 0



def _table(steps: tuple[object, ...]) -> str:
    from sriovkit.output import format_table
    from sriovkit.provision.plan import Step

    rows = [[n, s.policy, s.subject, s.kind.value, s.current, s.target]
            for n, s in enumerate(steps, 1) if isinstance(s, Step)]
    return format_table(["STEP", "POLICY", "DEVICE", "CHANGE", "FROM", "TO"], rows)
