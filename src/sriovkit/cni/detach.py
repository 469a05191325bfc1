"""DEL: give the VF back exactly as it was. Idempotent.

No record: nothing was attached (or a DEL already finished): success. With a
record, under the VF's lock: find the VF (below), release the IPAM allocation, restore the PF-side
settings ADD changed (before the netdev: some drivers refuse a netdev reset
while trust is off), bring the interface back to the host under its original
name, restore its MAC, MTU and up state, rebind the original driver, remove the
device info file, and only then the record. A failed step keeps the record, so
the runtime's next DEL retries; every step is safe to repeat.

When the pod's namespace is gone, the kernel returns a physical VF to the host
namespace, under the pod-side name (or ``devN`` if that was taken): it is found
by its PCI address and renamed back. That return is asynchronous (namespace
teardown runs after the last reference goes), so a DEL that comes right after
the namespace's deletion waits for the VF; if it is still not back, DEL fails
with "try again" and keeps the record rather than forget a VF that will
reappear renamed and reconfigured.

The VF is found by what the kernel says it is (`sriovkit.cni.locate`: its PCI
parent device), never by name: a pod that renamed it still gets it taken back,
and a link the pod made and named like it stays in the pod. A VF found in
neither the pod nor the host (hidden in a namespace of the pod's own) keeps the
whole attachment and DEL answers "try again"; DEL succeeds only once the kernel
shows the VF back in the host under its name, with its MAC and MTU.
"""

from __future__ import annotations

from sriovkit.cni.release import release
from sriovkit.cni.state import ForeignRecord
from sriovkit.cni.steps import Call


def detach(call: Call) -> None:
    """Under the attachment's lock: an ADD of this attachment still running finishes first."""
    env, store = call.env, call.ctx.store
    with store.attachment_lock(env.container_id, env.ifname, call.ctx.lock_timeout_s):
        try:
            record = store.load(env.container_id, env.ifname, pending=True)
        except ForeignRecord as exc:  # another attachment's file (colliding key): never release its VF
            call.log.warning("nothing to detach", reason=f"{exc.msg}: {exc.details}")
            return
        if record is None:
            call.log.info("nothing to detach")
            # an ADD killed while writing its journal changed nothing but may have left its temp
            # file; under this attachment's lock no writer of it is alive
            store.delete(env.container_id, env.ifname)
            return
        release(call, record)
