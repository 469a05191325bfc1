"""`sriovctl discover` and `pools`: what is on the node and where it goes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from sriovkit import nodepaths
from sriovkit.errors import UserError

if TYPE_CHECKING:
    from sriovkit.host.model import HostSnapshot, PciDevice
    from sriovkit.resources.pools import PoolSet


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("discover", help="show PFs and VFs found in sysfs")
    _host_root_arg(p)
    _output_arg(p)
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("pools", help="show the resource pools a device plugin config yields")
    p.add_argument("--config-file", required=True, help="the device plugin's config.json")
    p.add_argument("--resource-prefix", default=nodepaths.RESOURCE_PREFIX, help="prefix for resources without one")
    p.add_argument("--explain", action="store_true", help="say for every device which pool took it, or why none")
    p.add_argument("--strict", action="store_true",
                   help="refuse what upstream ignores (unknown fields, selectors that match nothing): for CI linting")
    _host_root_arg(p)
    _output_arg(p)
    p.set_defaults(func=cmd_pools)


def _host_root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host-root",
        default=os.environ.get("SRIOVKIT_HOST_ROOT", "/"),
        help="root of the node's filesystem: sysfs at ROOT/sys, device nodes at ROOT/dev "
        "(env SRIOVKIT_HOST_ROOT, default /)",
    )


def _output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def snapshot_of(host_root: str) -> HostSnapshot:
    from pathlib import Path

    from sriovkit.host.discover import discover
    from sriovkit.host.sysfs import Sysfs

    sysfs = Sysfs(Path(host_root))
    if not os.path.isdir(sysfs.pci_devices):
        raise UserError(f"--host-root {host_root}: no PCI devices directory at {sysfs.pci_devices}")
    return discover(sysfs)


def pools_of(host_root: str, config_file: str, resource_prefix: str, *,
             strict: bool = False) -> tuple[HostSnapshot, PoolSet]:
    """The pools a config yields on a host; what upstream would ignore is warned about on stderr
    (refused with `strict`)."""
    from sriovkit.host.routes import default_route_netdevs
    from sriovkit.resources.config import ConfigError, load_config_file
    from sriovkit.resources.pools import build_pools

    try:
        resources = load_config_file(config_file, default_prefix=resource_prefix, strict=strict)
    except ConfigError as exc:
        raise UserError(exc.problems) from None
    for line in resources.warnings:
        print(f"sriovctl: warning: {line}", file=sys.stderr)
    snapshot = snapshot_of(host_root)
    routed = default_route_netdevs(os.path.join(host_root, "proc"))
    return snapshot, build_pools(snapshot, resources, default_route_netdevs=routed)


def cmd_discover(args: argparse.Namespace) -> int:
    snapshot = snapshot_of(args.host_root)
    if args.output == "json":
        print(json.dumps([_device_json(d) for d in snapshot], indent=2))
        return 0
    print(device_table(snapshot))
    return 0


def device_table(snapshot: HostSnapshot) -> str:
    # every device the JSON lists: a NIC bound to vfio-pci or to no driver has no interface, and is
    # exactly the one an operator looks for when a pool comes up short
    from sriovkit.output import format_table

    rows = [_device_row(d) for d in snapshot]
    return format_table(["PCI ADDRESS", "ROLE", "VENDOR:DEVICE", "DRIVER", "INTERFACE", "PF", "VF", "NUMA",
                         "LINK", "VFS"], rows)


def _device_row(d: PciDevice) -> list[Any]:
    role = "PF" if d.is_sriov_pf else ("VF" if d.is_vf else ("NIC" if d.class_code.startswith("02") else "DEV"))
    vfs = f"{d.num_vfs}/{d.total_vfs}" if d.is_sriov_pf else None
    return [d.pci_address, role, f"{d.vendor}:{d.device}", d.driver, ",".join(d.netdevs), d.pf_netdev,
            d.vf_index, d.numa_node, d.link_type, vfs]


def _device_json(d: PciDevice) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pciAddress": d.pci_address, "vendor": d.vendor, "device": d.device, "class": d.class_code,
        "driver": d.driver, "numaNode": d.numa_node, "iommuGroup": d.iommu_group, "netdevs": list(d.netdevs),
        "linkType": d.link_type,
    }
    if d.is_sriov_pf:
        out.update(totalVfs=d.total_vfs, numVfs=d.num_vfs, vfs=list(d.vf_addresses))
    if d.is_vf:
        out.update(pfAddress=d.pf_address, pfName=d.pf_netdev, vfIndex=d.vf_index)
    if d.rdma_devices:
        out.update(rdmaDevices=list(d.rdma_devices))
    if d.acpi_index is not None:
        out.update(acpiIndex=d.acpi_index)
    return out


def cmd_pools(args: argparse.Namespace) -> int:
    from sriovkit.resources.config import check_resource_prefix

    check_resource_prefix("--resource-prefix", args.resource_prefix)
    _, pool_set = pools_of(args.host_root, args.config_file, args.resource_prefix,
                           strict=getattr(args, "strict", False))
    if args.explain:
        print(_explain(pool_set, as_json=args.output == "json"))
    elif args.output == "json":
        print(json.dumps(pool_set.as_ids(), indent=2))
    else:
        print(pools_table(pool_set))
    return 0


def pools_table(pool_set: PoolSet) -> str:
    from sriovkit.output import format_table, summarize_ids

    rows = [[p.name, p.config.device_type.value, len(p.devices), summarize_ids(list(p.device_ids)) or "(empty)"]
            for p in pool_set.pools]
    return format_table(["RESOURCE", "TYPE", "COUNT", "DEVICES"], rows)


def _explain(pool_set: PoolSet, *, as_json: bool) -> str:
    from sriovkit.resources.pools import taken_earlier

    if as_json:
        return json.dumps(
            {v.device_id: {"pool": v.pool, "excluded": v.excluded, "rejectedBy": {r: str(t) for r, t in v.rejections}}
             for v in pool_set.verdicts},
            indent=2,
        )
    lines: list[str] = []
    for v in pool_set.verdicts:
        if v.pool is not None:
            lines.append(f"{v.device_id}: in {v.pool}")
        elif v.excluded is not None:
            lines.append(f"{v.device_id}: never offered: {v.excluded}")
        elif not v.rejections:
            lines.append(f"{v.device_id}: in no pool (no resource of its device type)")
        else:
            lines.append(f"{v.device_id}: in no pool")
        for resource, reason in v.rejections:
            if v.pool is None or not taken_earlier(reason):
                lines.append(f"    {resource}: {reason}")
    empty = [p.name for p in pool_set.pools if not p.devices]
    if empty:
        lines.append("empty pools: " + ", ".join(empty))
    return "\n".join(lines)
