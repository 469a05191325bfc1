"""`sriovctl claims`: the DRA claims the agent's driver prepared on this node (its checkpoint),
so "who holds this VF" has an answer for DRA too (podresources names DRA devices by pool and
name only)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from sriovkit import nodepaths

if TYPE_CHECKING:
    from sriovkit.dra.checkpoint import ClaimRecord, PreparedVf


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("claims", help="the DRA claims prepared on this node (the DRA driver's checkpoint)")
    p.add_argument("--dra-state-dir", default=nodepaths.DRA_STATE_DIR,
                   help=f"the driver's state dir (default {nodepaths.DRA_STATE_DIR})")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=_claims)


def _claims(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sriovkit.dra.checkpoint import FILE_NAME, Checkpoint
    from sriovkit.errors import UserError
    from sriovkit.output import format_table

    state = Path(args.dra_state_dir)
    if not (state / FILE_NAME).exists():
        raise UserError(f"--dra-state-dir {state}: no {FILE_NAME} (no claim was ever prepared here)")
    try:
        claims = Checkpoint(state).claims()
    except (OSError, ValueError) as exc:
        raise UserError(f"--dra-state-dir {state}: {FILE_NAME} unreadable: {exc}") from None
    rows = [_row(uid, rec, dev) for uid, rec in sorted(claims.items()) for dev in rec.get("devices", [])]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(["CLAIM", "UID", "REQUEST", "DEVICE", "VF", "RESOURCE", "DRIVER", "STATE"],
                       [[r["claim"], r["uid"][:8], r["request"], r["device"], r["pciAddress"], r["resource"],
                         r["driver"], r["state"]] for r in rows]))
    return 0


def _row(uid: str, record: ClaimRecord, dev: PreparedVf) -> dict[str, Any]:
    bound, original = dev.get("bound_driver"), dev.get("original_driver")
    driver = f"{bound} (was {original})" if bound and bound != original else str(original or "-")
    return {"claim": f"{record.get('namespace', '')}/{record.get('name', '')}", "uid": uid,
            "request": dev.get("request", ""), "pool": dev.get("pool", ""), "device": dev.get("device", ""),
            "pciAddress": dev.get("pci", ""), "resource": dev.get("resource", ""), "driver": driver,
            "cdiDevices": list(dev.get("cdi_ids", [])),
            "state": "prepared" if record.get("complete") else "interrupted prepare (unprepare or a retry undoes it)"}
