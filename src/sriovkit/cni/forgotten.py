"""Attachments whose DEL will never come: their pod's sandbox is gone, so their VF is released
here with the steps DEL uses.

A runtime forgets an attachment when its DEL failed and a plugin before us dropped what it knew
(Multus' delegate cache, after our DEL answered "try again" while the agent restarted): the kubelet
retries StopPodSandbox, Multus answers it without calling us, the sandbox is removed, and our record
keeps the VF out of its pool for good. CNI GC would release it, but the kubelet does not send GC.

An attachment is forgotten only when both hold, each from what the kernel or the runtime says:
- the runtime lists no sandbox with its container ID, in any state (a NOTREADY sandbox still gets
  its DEL), and
- its network namespace is gone. During an ADD the runtime does not list the sandbox yet (containerd
  adds it to its store after the network is set up), but the namespace exists from before the ADD
  until after the DEL: an ADD in progress, or a pod still being set up, is never taken for forgotten.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from sriovkit.cni.context import CniContext
from sriovkit.cni.env import CniEnv
from sriovkit.cni.log import EventLog
from sriovkit.cni.netconf import parse_cni_args, parse_netconf
from sriovkit.cni.release import release
from sriovkit.cni.state import AttachmentRecord
from sriovkit.cni.steps import Call


def forgotten(records: Iterable[AttachmentRecord], sandboxes: set[str],
              netns_exists: Callable[[str], bool]) -> list[AttachmentRecord]:
    """The records whose sandbox `sandboxes` (every ID the runtime knows) lacks and whose network
    namespace is gone."""
    return [r for r in records
            if r.container_id not in sandboxes and not (r.netns and netns_exists(r.netns))]


def release_forgotten(ctx: CniContext, record: AttachmentRecord) -> None:
    """DEL for one forgotten attachment, from its record: the IPAM plugin's DEL with ADD's config,
    CNI_PATH and CNI_ARGS, the VF's settings restored, the VF back in the host, the record removed.
    Under the attachment's lock; left alone if the record changed meanwhile (as CNI GC does).
    Raises CniError as DEL would (the record is kept, a later pass retries)."""
    log = EventLog(command="DEL", container=record.container_id, ifname=record.ifname)
    args = parse_cni_args(record.cni_args)
    name = args.get("K8S_POD_NAME", "")
    log.bind(pod=f"{args.get('K8S_POD_NAMESPACE', '')}/{name}" if name else "", pci=record.pci_address)
    env = CniEnv(command="DEL", container_id=record.container_id, netns=record.netns, ifname=record.ifname,
                 runtime_ifname=record.runtime_ifname, path=tuple(record.cni_path), args=args,
                 raw_args=record.cni_args)
    conf = parse_netconf(record.config or json.dumps({"cniVersion": "1.0.0", "name": record.network,
                                                      "type": "sriov"}),
                         cni_args=args, need_device=False)
    call = Call(ctx=ctx, env=env, conf=conf, log=log)
    log.info("releasing a forgotten attachment", reason="the runtime has no such sandbox and its netns is gone",
             netns=record.netns, network=record.network)
    with ctx.netlink.operation(), ctx.store.attachment_lock(record.container_id, record.ifname, ctx.lock_timeout_s):
        release(call, record, only_if_unchanged=True)
