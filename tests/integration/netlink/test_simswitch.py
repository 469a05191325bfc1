"""SimulatedSwitchNetlink and the veth-backed simulated VFs of sriovkit/sim/net."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns as pyroute2_netns

from sriovkit.commands.ports import netlink_for
from sriovkit.host.sysfs import Sysfs
from sriovkit.netlink.errors import InvalidValueError, LinkNotFoundError, NameInUseError, NotSupportedError
from sriovkit.netlink.kernel import KernelNetlink
from sriovkit.netlink.model import ZERO_MAC, LinkState, VfSettings, VlanProto
from sriovkit.sim import host as sim
from sriovkit.sim.linkwatch import HostLinkWatch
from sriovkit.sim.net import SimNetwork, attach_veths, plan_ports
from sriovkit.sim.switch import SimulatedSwitchNetlink
from tests.support.cni_host import veth_host_spec
from tests.support.kernel import ip_json
from tests.support.names import NetnsFactory, unique_name
from tests.support.waiting import wait_for

VethHost = tuple[sim.SimulatedHost, SimNetwork]


def switch_of(host: sim.SimulatedHost) -> SimulatedSwitchNetlink:
    return SimulatedSwitchNetlink(host, KernelNetlink(Sysfs(host.root)))


@pytest.fixture
def tree_host(tmp_path: Path) -> sim.SimulatedHost:
    """A simulated host without interfaces: enough for the embedded switch's settings."""
    return sim.create(tmp_path / "host", veth_host_spec("pf0", num_vfs=4))


def all_ifnames() -> set[str]:
    return {link["ifname"] for link in ip_json("link", "show")}


def tree_names(host: sim.SimulatedHost) -> set[str]:
    return {p.name for p in (host.root / "sys/class/net").iterdir()}


# -- the embedded switch: settings (no root needed) --------------------------------------
def test_a_fresh_vf_has_the_defaults_of_a_new_vf(tree_host: sim.SimulatedHost) -> None:
    settings = switch_of(tree_host).all_vf_settings("pf0")
    assert settings == [VfSettings(vf_index=i) for i in range(4)]
    assert (settings[0].mac, settings[0].spoofchk, settings[0].trust) == (ZERO_MAC, True, False)
    assert settings[0].link_state is LinkState.AUTO


def test_every_setting_reads_back_from_another_instance(tree_host: sim.SimulatedHost) -> None:
    first = switch_of(tree_host)
    first.set_vf_mac("pf0", 2, "02:AB:00:00:00:02")
    first.set_vf_vlan("pf0", 2, 100, 5, VlanProto.DOT1AD)
    first.set_vf_spoofchk("pf0", 2, False)
    first.set_vf_trust("pf0", 2, True)
    first.set_vf_link_state("pf0", 2, LinkState.DISABLE)
    first.set_vf_rate("pf0", 2, 100, 1000)

    second = switch_of(sim.open_existing(tree_host.root))
    assert second.vf_settings("pf0", 2) == VfSettings(
        vf_index=2, mac="02:ab:00:00:00:02", vlan=100, qos=5, vlan_proto=VlanProto.DOT1AD,
        spoofchk=False, trust=True, link_state=LinkState.DISABLE, min_tx_rate=100, max_tx_rate=1000,
    )
    assert second.vf_settings("pf0", 1) == VfSettings(vf_index=1)  # its neighbours untouched


def _run_setter_process(root: Path, vf_index: int, vlan: int) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        from sriovkit.sim import host as sim
        from sriovkit.host.sysfs import Sysfs
        from sriovkit.commands.ports import netlink_for
        from sriovkit.netlink.model import VlanProto
        nl = netlink_for(Sysfs(sim.open_existing({str(root)!r}).root))
        for round in range(20):
            nl.set_vf_vlan("pf0", {vf_index}, {vlan} + round, 0, VlanProto.DOT1Q)
            nl.set_vf_trust("pf0", {vf_index}, round % 2 == 0)
    """)
    return subprocess.Popen([sys.executable, "-c", code], text=True, stderr=subprocess.PIPE)


def test_two_processes_writing_one_pf_lose_nothing(tree_host: sim.SimulatedHost) -> None:
    procs = [_run_setter_process(tree_host.root, 0, 100), _run_setter_process(tree_host.root, 3, 300)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    settings = switch_of(tree_host).all_vf_settings("pf0")
    assert (settings[0].vlan, settings[0].trust) == (119, False)
    assert (settings[3].vlan, settings[3].trust) == (319, False)
    assert settings[1] == VfSettings(vf_index=1)


SETTERS: dict[str, Callable[[SimulatedSwitchNetlink], None]] = {
    "mac": lambda nl: nl.set_vf_mac("pf0", 1, "02:00:00:00:00:01"),
    "vlan": lambda nl: nl.set_vf_vlan("pf0", 1, 10, 0, VlanProto.DOT1Q),
    "vlanProto": lambda nl: nl.set_vf_vlan("pf0", 1, 10, 0, VlanProto.DOT1AD),
    "spoofchk": lambda nl: nl.set_vf_spoofchk("pf0", 1, False),
    "trust": lambda nl: nl.set_vf_trust("pf0", 1, True),
    "linkState": lambda nl: nl.set_vf_link_state("pf0", 1, LinkState.ENABLE),
    "minTxRate": lambda nl: nl.set_vf_rate("pf0", 1, 10, 0),
    "maxTxRate": lambda nl: nl.set_vf_rate("pf0", 1, 0, 10),
}


@pytest.mark.parametrize("setting", sorted(SETTERS))
def test_an_unsupported_setting_is_refused_and_changes_nothing(tmp_path: Path, setting: str) -> None:
    host = sim.create(tmp_path / "host", veth_host_spec("pf0", unsupportedVfSettings=[setting]))
    nl = switch_of(host)
    before = nl.all_vf_settings("pf0")
    with pytest.raises(NotSupportedError, match=setting):
        SETTERS[setting](nl)
    assert nl.all_vf_settings("pf0") == before
    others = [name for name in SETTERS if name != setting and not (setting == "vlan" and name == "vlanProto")]
    for name in others:  # every other knob still works
        SETTERS[name](nl)


def test_a_nic_without_802_1ad_still_takes_802_1q_and_no_rate_limit(tmp_path: Path) -> None:
    spec = veth_host_spec("pf0", unsupportedVfSettings=["vlanProto", "minTxRate", "maxTxRate"])
    nl = switch_of(sim.create(tmp_path / "host", spec))
    nl.set_vf_vlan("pf0", 0, 7, 1, VlanProto.DOT1Q)
    nl.set_vf_rate("pf0", 0, 0, 0)
    assert nl.vf_settings("pf0", 0).vlan == 7


@pytest.mark.parametrize(("call", "error"), [
    (lambda nl: nl.set_vf_vlan("pf0", 0, 4096, 0, VlanProto.DOT1Q), InvalidValueError),
    (lambda nl: nl.set_vf_vlan("pf0", 0, 10, 8, VlanProto.DOT1Q), InvalidValueError),
    (lambda nl: nl.set_vf_rate("pf0", 0, 200, 100), InvalidValueError),
    (lambda nl: nl.set_vf_mac("pf0", 0, "not-a-mac"), InvalidValueError),
    (lambda nl: nl.set_vf_mac("pf0", 0, "01:00:5e:00:00:01"), InvalidValueError),
    (lambda nl: nl.set_vf_trust("pf0", 4, True), LinkNotFoundError),
    (lambda nl: nl.set_vf_trust("pf0", -1, True), LinkNotFoundError),
    (lambda nl: nl.vf_settings("pf0", 4), LinkNotFoundError),
    (lambda nl: nl.set_vf_trust("nosuchpf", 0, True), LinkNotFoundError),
    (lambda nl: nl.all_vf_settings("nosuchpf"), LinkNotFoundError),
])
def test_bad_requests_raise_typed_errors_and_change_nothing(
    tree_host: sim.SimulatedHost, call: Callable[[SimulatedSwitchNetlink], Any], error: type[Exception]
) -> None:
    nl = switch_of(tree_host)
    before = nl.all_vf_settings("pf0")
    with pytest.raises(error):
        call(nl)
    assert nl.all_vf_settings("pf0") == before


def test_max_rate_zero_means_no_limit_so_any_min_is_valid(tree_host: sim.SimulatedHost) -> None:
    nl = switch_of(tree_host)
    nl.set_vf_rate("pf0", 0, 500, 0)
    assert (nl.vf_settings("pf0", 0).min_tx_rate, nl.vf_settings("pf0", 0).max_tx_rate) == (500, 0)


def test_a_pf_with_256_vfs_reads_back_every_setting(tmp_path: Path) -> None:
    host = sim.create(tmp_path / "host", {"pfs": [{"name": "pf0", "numVfs": 256, "totalVfs": 256}]})
    nl = switch_of(host)
    for i in range(256):
        nl.set_vf_vlan("pf0", i, i + 1, i % 8, VlanProto.DOT1Q)
    nl.set_vf_mac("pf0", 255, "02:00:00:00:00:ff")
    settings = switch_of(sim.open_existing(host.root)).all_vf_settings("pf0")
    assert [(s.vf_index, s.vlan, s.qos) for s in settings] == [(i, i + 1, i % 8) for i in range(256)]
    assert settings[255].mac == "02:00:00:00:00:ff"


def test_netlink_for_picks_the_simulated_switch_only_for_a_simulated_root(
    tree_host: sim.SimulatedHost, tmp_path: Path
) -> None:
    assert isinstance(netlink_for(Sysfs(tree_host.root)), SimulatedSwitchNetlink)
    assert isinstance(netlink_for(Sysfs(tmp_path)), KernelNetlink)
    assert isinstance(netlink_for(Sysfs(Path("/"))), KernelNetlink)


def test_planned_names_are_short_unique_and_follow_the_tree(tmp_path: Path) -> None:
    spec = {"pfs": [{"name": "pa", "numVfs": 3, "vfDrivers": {"1": "vfio-pci"}}, {"name": "pb", "numVfs": 0}]}
    host = sim.create(tmp_path / "host", spec)
    bridges, ports = plan_ports(host)
    assert bridges == ["pa"]  # a PF without VFs is itself a veth (bridges cannot leave the host netns)
    assert [p.netdev for p in ports] == ["pav0", "pav2", "pb"]  # vfio-pci VF 1 has no interface
    assert len({p.peer for p in ports}) == len(ports) and all(len(p.peer) <= 15 for p in ports)
    assert all(int(p.mac.split(":")[0], 16) & 0b11 == 0b10 for p in ports)  # local, unicast
    other = sim.create(tmp_path / "other", spec)
    assert not {p.peer for p in ports} & {p.peer for p in plan_ports(other)[1]}
    assert plan_ports(sim.open_existing(host.root)) == (bridges, ports)  # deterministic


# -- real interfaces (root) ----------------------------------------------------------------
@pytest.mark.root
def test_attach_makes_a_bridge_and_veths_named_by_the_tree(veth_host: VethHost) -> None:
    host, network = veth_host
    pf = host.spec.pfs[0].name
    names = all_ifnames()
    assert pf in names
    assert {host.vf_netdev_name(0, i) for i in range(4)} <= names
    peers = ip_json("-d", "link", "show", "master", pf)
    assert sorted(link["ifname"] for link in peers) == sorted(p.peer for p in network.ports)
    nl = switch_of(host)
    vf0 = nl.find_link(host.vf_netdev_name(0, 0))
    assert vf0 is not None and vf0.mac == network.ports[0].mac


@pytest.mark.root
def test_move_out_and_back_keeps_the_tree_in_sync(veth_host: VethHost, netns: NetnsFactory) -> None:
    host, _ = veth_host
    nl, pod = switch_of(host), netns()
    vf1, name = host.vf_address(0, 1), host.vf_netdev_name(0, 1)
    assert nl.device_netdev(vf1) == name

    nl.move_link(name, src_netns=None, dst_netns=pod, new_name="net1")
    assert nl.device_netdev(vf1) is None
    assert name not in tree_names(host)
    assert nl.find_link("net1", pod) is not None

    back = unique_name("skb")
    nl.move_link("net1", src_netns=pod, dst_netns=None, new_name=back)
    assert nl.device_netdev(vf1) == back
    device_dir = (host.root / "sys/bus/pci/devices" / vf1).resolve()
    assert (host.root / "sys/class/net" / back).resolve() == device_dir / "net" / back

    nl.rename_link(back, name)
    assert nl.device_netdev(vf1) == name and back not in tree_names(host)
    assert name in all_ifnames()


@pytest.mark.root
def test_a_refused_move_leaves_the_tree_alone(veth_host: VethHost, netns: NetnsFactory) -> None:
    host, _ = veth_host
    nl, pod = switch_of(host), netns()
    nl.move_link(host.vf_netdev_name(0, 0), src_netns=None, dst_netns=pod, new_name="net1")
    with pytest.raises(NameInUseError):
        nl.move_link(host.vf_netdev_name(0, 2), src_netns=None, dst_netns=pod, new_name="net1")
    assert nl.device_netdev(host.vf_address(0, 2)) == host.vf_netdev_name(0, 2)


@pytest.mark.root
def test_a_vf_whose_netns_died_comes_back_by_pci_address(veth_host: VethHost, netns: NetnsFactory) -> None:
    host, network = veth_host
    nl, pod = switch_of(host), netns()
    vf3, name = host.vf_address(0, 3), host.vf_netdev_name(0, 3)
    pod_side = unique_name("skn")
    nl.move_link(name, src_netns=None, dst_netns=pod, new_name=pod_side)
    peer = next(p.peer for p in network.ports if p.pci_address == vf3)
    pyroute2_netns.remove(pod.rsplit("/", 1)[-1])
    wait_for("the veth to die with its namespace", lambda: peer not in all_ifnames(), timeout=5, interval=0.025)

    # A query changes nothing: the pair stays dead until the simulator's own step.
    assert nl.device_netdev(vf3) is None and nl.device_links(vf3) == []
    assert peer not in all_ifnames()
    # Like the kernel returning a real VF: under its pod-side name, free in the host.
    assert nl.return_vfs_of_dead_namespaces() == [pod_side]
    returned = nl.device_netdev(vf3)
    assert returned == pod_side
    assert {pod_side, peer} <= all_ifnames()
    assert switch_of(host).find_link(pod_side) is not None
    nl.rename_link(returned, name)
    assert nl.device_netdev(vf3) == name


@pytest.mark.root
def test_an_operation_and_a_wait_for_link_changes_return_the_vfs_of_dead_namespaces(
    veth_host: VethHost, netns: NetnsFactory
) -> None:
    host, network = veth_host
    nl = switch_of(host)
    for index, step in ((0, "operation"), (1, "await")):
        pod, vf = netns(), host.vf_address(0, index)
        pod_side = unique_name("skn")
        nl.move_link(host.vf_netdev_name(0, index), src_netns=None, dst_netns=pod, new_name=pod_side)
        peer = next(p.peer for p in network.ports if p.pci_address == vf)
        pyroute2_netns.remove(pod.rsplit("/", 1)[-1])
        wait_for("the veth to die with its namespace", lambda p=peer: p not in all_ifnames(), timeout=5, interval=0.025)
        assert nl.device_netdev(vf) is None
        if step == "operation":
            with nl.operation():
                assert nl.device_netdev(vf) == pod_side
        else:
            nl.await_link_changes(0)
            assert nl.device_netdev(vf) == pod_side
        assert pod_side in tree_names(host)
    assert nl.return_vfs_of_dead_namespaces() == []  # nothing else is away


@pytest.mark.root
@pytest.mark.parametrize("catch_up", ["called", "at the next operation, the watch running"])
def test_the_tree_follows_an_interface_back_in_the_host_once_the_simulator_catches_up(
    veth_host: VethHost, netns: NetnsFactory, catch_up: str
) -> None:
    """Moved home by someone else (another process, here the kernel port itself), the tree not told."""
    host, _ = veth_host
    kernel, nl, pod = KernelNetlink(Sysfs(host.root)), switch_of(host), netns()
    vf2 = host.vf_address(0, 2)
    try:
        with nl.operation():  # the first: the watch starts
            nl.move_link(host.vf_netdev_name(0, 2), src_netns=None, dst_netns=pod, new_name="net1")
        back = unique_name("skb")
        kernel.move_link("net1", src_netns=pod, dst_netns=None, new_name=back)
        assert nl.device_netdev(vf2) == back and back not in tree_names(host)  # a query changes nothing
        if catch_up == "called":
            assert nl.return_vfs_of_dead_namespaces() == []
        else:
            with nl.operation():
                assert nl.device_netdev(vf2) == back
        assert back in tree_names(host)
    finally:
        kernel.close()
        nl.close()


@pytest.mark.root
def test_operations_starting_together_share_catch_ups_and_each_sees_what_died_before_it(
    veth_host: VethHost, netns: NetnsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, network = veth_host
    nl, pod = switch_of(host), netns()
    vf = host.vf_address(0, 1)
    nl.move_link(host.vf_netdev_name(0, 1), src_netns=None, dst_netns=pod, new_name="net1")
    peer = next(p.peer for p in network.ports if p.pci_address == vf)
    pyroute2_netns.remove(pod.rsplit("/", 1)[-1])
    wait_for("the veth to die with its namespace", lambda: peer not in all_ifnames(), timeout=5, interval=0.025)
    runs: list[float] = []
    real = SimulatedSwitchNetlink.return_vfs_of_dead_namespaces

    def slow_run(self: SimulatedSwitchNetlink) -> list[str]:
        runs.append(time.monotonic())
        time.sleep(0.2)  # long enough for every thread below to arrive during one run
        return real(self)

    monkeypatch.setattr(SimulatedSwitchNetlink, "return_vfs_of_dead_namespaces", slow_run)
    seen: list[str | None] = []
    start = threading.Barrier(8)

    def operate() -> None:
        start.wait()
        with nl.operation():
            seen.append(nl.device_netdev(vf))

    threads = [threading.Thread(target=operate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert seen == ["net1"] * 8  # revived before any of them went on
    assert 1 <= len(runs) <= 2  # one run, and at most one more for those that came while it ran


@pytest.mark.root
def test_a_catch_up_leaves_a_function_this_handle_is_moving_to_the_move(veth_host: VethHost, netns: NetnsFactory,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the kernel's move back and the tree's update the tree lags by design: a catch-up
    in another thread then must not write the function home under the name it has at that moment."""
    host, _ = veth_host
    nl, pod = switch_of(host), netns()
    vf, name = host.vf_address(0, 2), host.vf_netdev_name(0, 2)
    nl.move_link(name, src_netns=None, dst_netns=pod, new_name="net1")
    synced: list[str] = []
    real_sync = SimulatedSwitchNetlink._sync_tree_if_home
    monkeypatch.setattr(SimulatedSwitchNetlink, "_sync_tree_if_home",
                        lambda self, pci, query: (synced.append(pci), real_sync(self, pci, query)))
    real_move = KernelNetlink.move_link

    def move_then_catch_up(self: KernelNetlink, *args: Any, **kwargs: Any) -> None:
        real_move(self, *args, **kwargs)
        if kwargs.get("dst_netns") is None:  # back in the host, the tree not updated yet
            other = threading.Thread(target=nl.return_vfs_of_dead_namespaces)
            other.start()
            other.join()

    monkeypatch.setattr(KernelNetlink, "move_link", move_then_catch_up)
    nl.move_link("net1", src_netns=pod, dst_netns=None, new_name=name)
    assert synced == [] and nl.device_netdev(vf) == name and name in tree_names(host)
    assert nl.return_vfs_of_dead_namespaces() == []


@pytest.mark.root
def test_revive_takes_a_dev_name_when_the_pod_side_name_is_taken(
    veth_host: VethHost, netns: NetnsFactory
) -> None:
    host, network = veth_host
    nl, pod = switch_of(host), netns()
    vf0, vf1 = host.vf_address(0, 0), host.vf_address(0, 1)
    taken = host.vf_netdev_name(0, 1)  # comes back as the other VF's host name, already in use
    nl.move_link(host.vf_netdev_name(0, 0), src_netns=None, dst_netns=pod, new_name=taken)
    pyroute2_netns.remove(pod.rsplit("/", 1)[-1])
    peer = next(p.peer for p in network.ports if p.pci_address == vf0)
    wait_for("the veth to die with its namespace", lambda: peer not in all_ifnames(), timeout=5, interval=0.025)

    revived = network.revive()
    assert len(revived) == 1 and revived[0].startswith("dev") and revived[0] != host.vf_netdev_name(0, 0)
    assert nl.device_netdev(vf0) == revived[0] and nl.device_netdev(vf1) == taken
    assert network.revive() == []  # nothing else is missing


@pytest.mark.root
def test_destroy_from_another_process_leaves_no_interface(tmp_path: Path, netns: NetnsFactory) -> None:
    host = sim.create(tmp_path / "host", {"pfs": [
        {"name": unique_name("sk", 4), "numVfs": 3}, {"name": unique_name("sk", 4), "numVfs": 0},
    ]})
    network = attach_veths(host)
    made = {*network.bridges, *(p.netdev for p in network.ports), *(p.peer for p in network.ports)}
    try:
        assert made <= all_ifnames()
        switch_of(host).move_link(network.ports[0].netdev, src_netns=None, dst_netns=netns(), new_name="net1")
        code = "from sriovkit.sim import host as sim, net as simnet; "
        code += f"simnet.SimNetwork.of(sim.open_existing({str(host.root)!r})).destroy()"
        subprocess.run([sys.executable, "-c", code], check=True)
        assert not made & all_ifnames()
        SimNetwork.of(host).destroy()  # idempotent, nothing recorded any more
        network.destroy()
    finally:
        network.destroy()


@pytest.mark.root
def test_attach_fails_cleanly_when_a_name_is_taken(tmp_path: Path) -> None:
    pf = unique_name("sk", 4)
    first = sim.create(tmp_path / "a", veth_host_spec(pf, num_vfs=2))
    with attach_veths(first) as network:
        second = sim.create(tmp_path / "b", veth_host_spec(pf, num_vfs=2))
        before = all_ifnames()
        with pytest.raises(NameInUseError):
            attach_veths(second)
        assert all_ifnames() == before  # the first host's bridge survived, nothing leaked
        assert SimNetwork.of(second).ports == []
        assert network.bridges == [pf]


@pytest.mark.root
def test_sriovctl_sim_create_veth_and_destroy(tmp_path: Path) -> None:
    pf = unique_name("sk", 4)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(veth_host_spec(pf, num_vfs=2)))
    root = tmp_path / "host"
    cli = [sys.executable, "-m", "sriovkit"]
    try:
        subprocess.run([*cli, "sim", "create", str(root), "--spec", str(spec), "--veth"], check=True,
                       capture_output=True)
        assert {pf, f"{pf}v0", f"{pf}v1"} <= all_ifnames()
    finally:
        subprocess.run([*cli, "sim", "destroy", str(root)], check=True, capture_output=True)
    assert not {pf, f"{pf}v0", f"{pf}v1"} & all_ifnames()
    assert not root.exists()




@pytest.mark.root
def test_link_state_disable_takes_the_carrier_away(veth_host: VethHost, netns: NetnsFactory) -> None:
    host, _ = veth_host
    nl, pod = switch_of(host), netns()
    nl.move_link(host.vf_netdev_name(0, 2), src_netns=None, dst_netns=pod, new_name="net1")
    nl.set_link_up("net1", True, pod)

    def operstate() -> str:
        info = nl.find_link("net1", pod)
        assert info is not None
        return info.operstate

    nl.set_vf_link_state(host.spec.pfs[0].name, 2, LinkState.DISABLE)
    wait_for("carrier loss", lambda: operstate() != "up", timeout=5, interval=0.025)
    nl.set_vf_link_state(host.spec.pfs[0].name, 2, LinkState.AUTO)
    wait_for("carrier", lambda: operstate() == "up", timeout=5, interval=0.025)


@pytest.mark.root
def test_renames_in_the_pod_and_a_detour_through_another_netns_are_followed(
    veth_host: VethHost, netns: NetnsFactory
) -> None:
    host, _ = veth_host
    nl, pod, scratch = switch_of(host), netns(), netns()
    vf0 = host.vf_address(0, 0)
    nl.move_link(host.vf_netdev_name(0, 0), src_netns=None, dst_netns=pod, new_name="net1")
    nl.rename_link("net1", "eth9", pod)
    nl.move_link("eth9", src_netns=pod, dst_netns=scratch, new_name="tmp0")
    back = unique_name("skb")
    nl.move_link("tmp0", src_netns=scratch, dst_netns=None, new_name=back)
    assert nl.device_netdev(vf0) == back


@pytest.mark.root
def test_an_interface_moved_behind_the_switchs_back_is_recognised_by_its_peer(
    veth_host: VethHost, netns: NetnsFactory
) -> None:
    host, _ = veth_host
    kernel, nl, pod = KernelNetlink(Sysfs(host.root)), switch_of(host), netns()
    vf1 = host.vf_address(0, 1)
    kernel.move_link(host.vf_netdev_name(0, 1), src_netns=None, dst_netns=pod, new_name="net1")
    back = unique_name("skb")
    nl.move_link("net1", src_netns=pod, dst_netns=None, new_name=back)
    assert nl.device_netdev(vf1) == back
    assert host.vf_netdev_name(0, 1) not in tree_names(host)


def test_an_unknown_unsupported_setting_is_a_spec_error_naming_it(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(veth_host_spec("pf0", unsupportedVfSettings=["linkState", "rss"])))
    with pytest.raises(sim.SimSpecError, match=r"pfs\[0\]\.unsupportedVfSettings\[1\].*rss"):
        sim.load_spec(spec)


@pytest.mark.root
def test_the_host_is_the_same_wherever_its_tree_is_mounted(tmp_path: Path, netns: NetnsFactory) -> None:
    """The agent in a pod sees the node's directory under another path than the process that made
    the veths (upstream's device-plugin pod: under /var/lib/kubelet/; the chart: at agent.hostRoot):
    from there its VFs are still found by PCI address, in the host and in a pod, and destroy from
    there removes every interface made."""
    host = sim.create(tmp_path / "host", veth_host_spec(unique_name("sk", 5)))
    network = attach_veths(host)
    made = {*network.bridges, *(p.netdev for p in network.ports), *(p.peer for p in network.ports)}
    pod = netns()
    elsewhere = tmp_path / "mnt" / "seen-from-a-pod"
    elsewhere.mkdir(parents=True)
    code = textwrap.dedent(f"""
        from pathlib import Path
        from sriovkit.host.sysfs import Sysfs
        from sriovkit.netlink.kernel import KernelNetlink
        from sriovkit.sim import host as sim, net as simnet
        from sriovkit.sim.switch import SimulatedSwitchNetlink
        host = sim.open_existing({str(elsewhere)!r})
        nl = SimulatedSwitchNetlink(host, KernelNetlink(Sysfs(host.root)))
        vf = host.vf_address(0, 1)
        name = nl.device_netdev(vf)
        assert name == host.vf_netdev_name(0, 1), name
        nl.move_link(name, src_netns=None, dst_netns={pod!r}, new_name="net1")
        assert [link.name for link in nl.device_links(vf, {pod!r})] == ["net1"]
        assert nl.device_netdev(vf) is None
        nl.move_link("net1", src_netns={pod!r}, dst_netns=None, new_name=name)
        assert nl.device_netdev(vf) == name
        simnet.SimNetwork.of(host).destroy()
    """)
    try:
        subprocess.run(["unshare", "--mount", "--", "sh", "-c", 'mount --make-rprivate / && '
                        'mount --bind "$0" "$1" && exec "$2" -c "$3"', str(host.root), str(elsewhere),
                        sys.executable, code], check=True, timeout=60)
        assert not made & all_ifnames()
    finally:
        network.destroy()


@pytest.mark.root
def test_vfs_the_provisioner_creates_get_interfaces_and_lose_them_when_removed(
    tmp_path: Path, netns: NetnsFactory
) -> None:
    """Writing a PF's VF count (the node policy) on a host with interfaces: the new VFs get veths a
    pod can be given, as a real NIC's new VFs get netdevs; a switch opened before sees them; the
    PF, a veth while it had no VFs, becomes its switch's bridge; removed VFs take their pairs along,
    from a pod's namespace too."""
    from sriovkit.sim.provision import SimulatedProvisioner

    pf = unique_name("sk", 4)
    host = sim.create(tmp_path / "host", {"pfs": [{"name": pf, "numVfs": 0, "totalVfs": 8}]})
    network = attach_veths(host)
    try:
        nl = switch_of(sim.open_existing(host.root))  # long-lived, like the agent's
        assert nl.find_link(pf) is not None and [p.netdev for p in SimNetwork.of(host).ports] == [pf]
        pf_address = host.pf_address(0)
        provisioner = SimulatedProvisioner(sim.open_existing(host.root))
        provisioner.set_num_vfs(pf_address, 3)

        names = [host.vf_netdev_name(0, i) for i in range(3)]
        assert set(names) <= all_ifnames() and set(names) <= tree_names(sim.open_existing(host.root))
        assert ip_json("-d", "link", "show", pf)[0]["linkinfo"]["info_kind"] == "bridge"
        vf2 = host.vf_address(0, 2)
        assert nl.device_netdev(vf2) == names[2]
        nl.set_vf_vlan(pf, 2, 300, 0, VlanProto.DOT1Q)  # the old handle knows the PF has VFs now
        assert nl.vf_settings(pf, 2).vlan == 300
        pod = netns()
        nl.move_link(names[2], src_netns=None, dst_netns=pod, new_name="net1")
        assert [link.name for link in nl.device_links(vf2, pod)] == ["net1"]

        provisioner.set_num_vfs(pf_address, 0)
        assert not set(names) & all_ifnames()
        assert nl.find_link("net1", pod) is None, "the removed VF's interface went from the pod too"
        assert [p.netdev for p in SimNetwork.of(host).ports] == [pf] and SimNetwork.of(host).bridges == []
        assert ip_json("-d", "link", "show", pf)[0]["linkinfo"]["info_kind"] == "veth", "a PF without VFs again"
        provisioner.set_num_vfs(pf_address, 2)
        assert nl.vf_settings(pf, 1).vlan == 0 and nl.vf_settings(pf, 0).vlan == 0, "new VFs: no old settings"
    finally:
        SimNetwork.of(host).destroy()
        network.destroy()
    assert not {pf, *names} & all_ifnames()


# -- the catch-up's look at the host's link notifications (sim/linkwatch) ------------------------
def _count_passes(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    passes: list[None] = []
    real = SimulatedSwitchNetlink.return_vfs_of_dead_namespaces

    def counted(self: SimulatedSwitchNetlink) -> list[str]:
        passes.append(None)
        return real(self)

    monkeypatch.setattr(SimulatedSwitchNetlink, "return_vfs_of_dead_namespaces", counted)
    return passes


def _veth(name: str, peer_netns_name: str | None = None) -> None:
    """A veth pair in the host, `name` and `name`+"p"; with `peer_netns_name`, the second end is
    made in a namespace of its own as that (only `name` appears in the host)."""
    if peer_netns_name is None:
        subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
        return
    ns = name + "ns"
    if not Path("/run/netns", ns).exists():
        subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer_netns_name, "netns", ns],
                   check=True)


@pytest.mark.root
def test_operations_skip_the_dump_while_nothing_it_looks_for_happens(
    veth_host: VethHost, netns: NetnsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, _ = veth_host
    nl, pod, passes = switch_of(host), netns(), _count_passes(monkeypatch)
    name, vf = host.vf_netdev_name(0, 1), host.vf_address(0, 1)
    try:
        with nl.operation():
            pass
        assert len(passes) == 1  # the first: nothing was watched before it
        with nl.operation():  # an ADD's and a DEL's link work, this handle's own
            nl.move_link(name, src_netns=None, dst_netns=pod, new_name="net1")
            nl.set_link_up("net1", True, pod)
        with nl.operation():
            nl.move_link("net1", src_netns=pod, dst_netns=None, new_name=name)
        with nl.operation():
            assert nl.device_netdev(vf) == name
        assert len(passes) == 1
        other = unique_name("skx")
        _veth(other)  # links appear
        try:
            with nl.operation():
                pass
            assert len(passes) == 2
        finally:
            subprocess.run(["ip", "link", "del", other], check=False)
    finally:
        nl.close()


@pytest.mark.root
def test_an_operation_revives_a_pair_that_died_while_the_watch_ran(veth_host: VethHost, netns: NetnsFactory) -> None:
    host, network = veth_host
    nl, pod = switch_of(host), netns()
    vf = host.vf_address(0, 2)
    try:
        with nl.operation():
            nl.move_link(host.vf_netdev_name(0, 2), src_netns=None, dst_netns=pod, new_name="net1")
        with nl.operation():
            pass  # the watch has seen everything up to here
        peer = next(p.peer for p in network.ports if p.pci_address == vf)
        pyroute2_netns.remove(pod.rsplit("/", 1)[-1])
        wait_for("the veth to die with its namespace", lambda: peer not in all_ifnames(), timeout=5, interval=0.025)
        with nl.operation():
            assert nl.device_netdev(vf) == "net1"
    finally:
        nl.close()


@pytest.mark.root
def test_the_watch_says_look_after_its_socket_overran_and_forgets_the_arrivals_it_expected() -> None:
    watch = HostLinkWatch(lambda name: False)
    dummy = unique_name("skd")
    try:
        assert watch.worth_a_look()  # subscribed only now
        assert not watch.worth_a_look()
        watch.expect_arrival(dummy, dummy)
        assert watch._events is not None
        watch._events.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's smallest
        _veth(dummy)
        for _ in range(20):
            for state in ("up", "down"):
                subprocess.run(["ip", "link", "set", dummy, state], check=True)
        assert watch.worth_a_look()
        assert not watch.worth_a_look()  # the queue was read to its end
        assert watch._expected == {}
    finally:
        subprocess.run(["ip", "link", "del", dummy], check=False)
        watch.close()


@pytest.mark.root
def test_the_watch_counts_an_arrival_once_expected_and_a_peer_deleted() -> None:
    names = [unique_name("ska"), unique_name("skp")]
    watch = HostLinkWatch(lambda name: name == names[1])
    try:
        assert watch.worth_a_look()
        token = watch.expect_arrival("net1", names[0])
        _veth(names[0], "net1")  # its other end appears in a pod's namespace, as a VF end moved home leaves one
        assert not watch.worth_a_look()  # this handle's own arrival
        subprocess.run(["ip", "link", "del", names[0]], check=True)
        assert not watch.worth_a_look()  # a link that is no peer went
        watch.withdraw(token)  # consumed already: nothing to withdraw
        withdrawn = watch.expect_arrival("net1", names[0])
        watch.withdraw(withdrawn)  # the move did not happen
        _veth(names[0], "net1")
        assert watch.worth_a_look()
        subprocess.run(["ip", "link", "del", names[0]], check=True)
        _veth(names[1])
        assert watch.worth_a_look()  # made here: appeared
        subprocess.run(["ip", "link", "del", names[1]], check=True)
        assert watch.worth_a_look()  # a peer went
    finally:
        for name in names:
            subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)
            subprocess.run(["ip", "netns", "del", name + "ns"], check=False, capture_output=True)
        watch.close()
