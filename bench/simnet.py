"""Real interfaces for simulated hosts (root): attach, switch settings, move, destroy.

Prints one row per PF size: wall time to create the bridge and veth pairs,
to read every VF's switch settings, to write one setting, to move one VF into
a namespace and back, and to destroy everything.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

from pyroute2 import netns

from sriovkit.commands.ports import netlink_for
from sriovkit.host.sysfs import Sysfs
from sriovkit.output import format_table
from sriovkit.sim import host as sim
from sriovkit.sim.net import attach_veths

SIZES = (16, 64, 256)


def measure(num_vfs: int, workdir: Path) -> list[str]:
    pf = f"bn{secrets.token_hex(3)}"
    host = sim.create(workdir / pf, {"pfs": [{"name": pf, "numVfs": num_vfs, "totalVfs": num_vfs,
                                              "vfNetdevFormat": "{pf}_{index}"}]})
    ns_name = f"bench-{pf}"
    netns.create(ns_name)
    path = f"/var/run/netns/{ns_name}"
    t0 = time.perf_counter()
    network = attach_veths(host)
    try:
        t1 = time.perf_counter()
        nl = netlink_for(Sysfs(host.root))
        nl.all_vf_settings(pf)
        t2 = time.perf_counter()
        nl.set_vf_trust(pf, num_vfs - 1, True)
        t3 = time.perf_counter()
        vf = host.vf_netdev_name(0, num_vfs - 1)
        nl.move_link(vf, src_netns=None, dst_netns=path, new_name="net1")
        nl.move_link("net1", src_netns=path, dst_netns=None, new_name=vf)
        t4 = time.perf_counter()
    finally:
        network.destroy()
        netns.remove(ns_name)
    t5 = time.perf_counter()
    ms = [1000 * d for d in (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)]
    return [str(num_vfs), *(f"{m:.1f}" for m in ms)]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, Path(tmp)) for n in SIZES]
    print(format_table(["VFs", "attach ms", "read all ms", "set one ms", "move+back ms", "destroy ms"], rows))


if __name__ == "__main__":
    main()
