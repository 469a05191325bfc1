"""Health from PF link state, read from a simulated tree like from the kernel's."""

from __future__ import annotations

from sriovkit.deviceplugin.health import is_healthy, link_netdev, read_link_states, read_vf_counts
from sriovkit.host.discover import discover
from sriovkit.host.sysfs import Sysfs
from sriovkit.sim.host import set_operstate


def test_vf_health_follows_its_pf_link(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 2}, {"name": "eth1", "numVfs": 1})
    sysfs = Sysfs(host.root)
    vf0 = snap.get(host.vf_address(0, 0))
    other = snap.get(host.vf_address(1, 0))
    assert link_netdev(vf0) == "eth0"
    assert read_link_states(sysfs, ["eth0", "eth1"]) == {"eth0": True, "eth1": True}
    set_operstate(sysfs, "eth0", "down")
    states = read_link_states(sysfs, ["eth0", "eth1", "gone0"])
    assert states == {"eth0": False, "eth1": True}
    assert not is_healthy(vf0, states)
    assert is_healthy(other, states)
    set_operstate(sysfs, "eth0", "unknown")
    assert is_healthy(vf0, read_link_states(sysfs, ["eth0"]))


def test_vf_without_host_interface_stays_healthy(make_host):
    host, _ = make_host({"name": "eth0", "numVfs": 2})
    host.set_netdev(host.vf_address(0, 1), None)  # moved into a pod
    snap = discover(Sysfs(host.root))
    vf = snap.get(host.vf_address(0, 1))
    assert vf.netdev is None
    assert is_healthy(vf, read_link_states(Sysfs(host.root), ["eth0"]))


def test_vf_counts(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 3})
    sysfs = Sysfs(host.root)
    pf = host.pf_address(0)
    assert read_vf_counts(sysfs, [pf]) == {pf: 3}
    host.set_num_vfs(0, 1)
    assert read_vf_counts(sysfs, [pf]) == {pf: 1}
