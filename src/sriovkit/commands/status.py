"""`sriovctl attachments` and `sriovctl allocations`: which VF went where, as the node knows it.

`attachments` reads the CNI's records (what ADD changed, for DEL to put back); `allocations` asks
the kubelet's podresources API which devices it assigned to which pod. Together they answer "who
holds this VF" and "why was this VF not given back" without reading JSON files by hand.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from sriovkit.nodepaths import CNI_STATE_DIR, POD_RESOURCES_SOCKET

if TYPE_CHECKING:
    from sriovkit.cni.state import AttachmentRecord


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("attachments", help="the VFs the sriov CNI attached to pods (its records on this node)")
    p.add_argument("--cni-state-dir", default=CNI_STATE_DIR,
                   help=f"the CNI's state dir (default {CNI_STATE_DIR})")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=_attachments)

    p = sub.add_parser("allocations", help="the devices the kubelet assigned to pods (podresources API)")
    p.add_argument("--pod-resources-socket", default=POD_RESOURCES_SOCKET,
                   help=f"the kubelet's podresources socket (default {POD_RESOURCES_SOCKET})")
    p.add_argument("--resource", help="only this resource (full name, e.g. intel.com/sriov_netdevice)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=_allocations)


def _attachments(args: argparse.Namespace) -> int:
    import os

    from sriovkit.cni.spec import CniError
    from sriovkit.cni.state import StateStore
    from sriovkit.errors import UserError
    from sriovkit.output import format_table

    if not os.path.isdir(args.cni_state_dir):
        raise UserError(f"--cni-state-dir {args.cni_state_dir}: no such directory (no attachment was ever made)")
    try:
        records = StateStore(args.cni_state_dir).records(pending=True)
    except CniError as exc:
        raise UserError(f"--cni-state-dir {args.cni_state_dir}: {exc.msg}") from None
    rows = [_attachment_row(r) for r in records]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(["CONTAINER", "IFNAME", "VF", "PF", "VF#", "MODE", "HOST NAME", "IPS", "NETNS", "STATE"],
                       [[r["container"][:12], r["ifname"], r["pciAddress"], r["pf"], r["vfIndex"], r["mode"],
                         r["hostName"], ",".join(r["ips"]), r["netns"], r["state"]] for r in rows]))
    return 0


def _attachment_row(record: AttachmentRecord) -> dict[str, Any]:
    return {"container": record.container_id, "ifname": record.ifname, "pciAddress": record.pci_address,
            "pf": record.pf_netdev, "vfIndex": record.vf_index, "mode": record.mode, "network": record.network,
            "hostName": record.original.host_ifname, "ips": list(record.ips), "netns": record.netns,
            "state": "attached" if record.complete else "interrupted ADD (DEL restores it)"}


def _allocations(args: argparse.Namespace) -> int:
    from sriovkit.errors import UserError
    from sriovkit.kubeapi.podresources import PodResourcesClient, PodResourcesError
    from sriovkit.output import format_table

    try:
        assignments = PodResourcesClient(args.pod_resources_socket, timeout_s=5).assignments()
    except PodResourcesError as exc:
        raise UserError(f"--pod-resources-socket {args.pod_resources_socket}: {exc.code}: {exc.details}") from None
    rows = [{"namespace": a.namespace, "pod": a.pod, "container": a.container, "resource": a.resource,
             "devices": list(a.device_ids)}
            for a in assignments if args.resource in (None, a.resource)]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(["NAMESPACE", "POD", "CONTAINER", "RESOURCE", "DEVICES"],
                       [[r["namespace"], r["pod"], r["container"], r["resource"], ",".join(r["devices"])]
                        for r in rows]))
    return 0
