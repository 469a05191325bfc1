"""`SimulatedSwitchNetlink`: the Netlink port on a simulated host.

A simulated VF's interface is a real veth (see `sriovkit.sim.net`), so every
link operation goes to the kernel through `links`. What a veth cannot hold is
the PF side of an SR-IOV NIC: the embedded switch's per-VF settings. Those live
in one JSON file per PF under ``<root>/eswitch/``, shared by every process that
opens the same host (node agent, standalone CNI), with refusals taken from the
PF's spec (`unsupportedVfSettings`) the way a driver without a knob refuses it.

Like the kernel's sysfs, the host's tree follows the interfaces: a VF's
``net/<name>`` entry disappears when its interface leaves the host namespace
and reappears under the name it comes back with.

Queries change nothing. What a kernel does on its own and veths do not (a VF
whose pod's namespace is torn down returns to the host namespace; a veth dies
with it) is one explicit step, `return_vfs_of_dead_namespaces`, taken at the
start of every operation (skipped while the host's link notifications say there
is nothing for it: `sim.linkwatch`) and after every `await_link_changes`.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from sriovkit.host.statefile import locked, read_json, write_json_atomic
from sriovkit.netlink.errors import InvalidValueError, LinkNotFoundError, NotSupportedError
from sriovkit.netlink.kernel import KernelNetlink
from sriovkit.netlink.model import MAX_QOS, MAX_VLAN, LinkInfo, LinkState, RouteInfo, VfSettings, VlanProto
from sriovkit.sim import net as simnet
from sriovkit.sim.host import SimPF, SimulatedHost
from sriovkit.sim.linkwatch import HostLinkWatch

if TYPE_CHECKING:
    from sriovkit.netlink.rawlink import LinkQuery


class SwitchChanges(TypedDict, total=False):
    """Some of one VF's settings, as a setter changes them."""

    mac: str
    vlan: int
    qos: int
    vlan_proto: int  # ETH_P_8021Q / ETH_P_8021AD
    spoofchk: bool
    trust: bool
    link_state: int  # IFLA_VF_LINK_STATE_*
    min_tx_rate: int
    max_tx_rate: int


class SwitchEntry(TypedDict):
    """One VF's settings in its PF's state file (keyed by VF index): every field, enums as numbers."""

    mac: str
    vlan: int
    qos: int
    vlan_proto: int
    spoofchk: bool
    trust: bool
    link_state: int
    min_tx_rate: int
    max_tx_rate: int


class SimulatedSwitchNetlink:
    """PF-side VF settings in state files, links on the kernel, the host's tree kept in sync."""

    def __init__(self, host: SimulatedHost, links: KernelNetlink) -> None:
        self.host = host
        self._links = links
        # functions this handle's threads are moving right now: between a move's kernel change and
        # its tree update the tree lags the kernel by design, and the catch-up must not "repair" it
        self._moving: collections.Counter[str] = collections.Counter()
        self._moving_lock = threading.Lock()
        # one catch-up at a time per handle: calls arriving while one runs share the next run
        self._catch_up = threading.Condition()
        self._catch_up_asked = self._catch_up_done = 0
        self._catching_up = False
        # whether there is anything to catch up on, from the host's link notifications
        self._host_links = HostLinkWatch(simnet.looks_like_peer)

    # -- the embedded switch ---------------------------------------------------------
    def vf_settings(self, pf: str, vf_index: int) -> VfSettings:
        spec = self._pf(pf)
        self._check_index(pf, spec, vf_index)
        return _decode(vf_index, read_json(self._state_path(pf)).get(str(vf_index)))

    def all_vf_settings(self, pf: str) -> list[VfSettings]:
        spec = self._pf(pf)
        state = read_json(self._state_path(pf))
        return [_decode(i, state.get(str(i))) for i in range(spec.num_vfs)]

    def set_vf_mac(self, pf: str, vf_index: int, mac: str) -> None:
        self._update(pf, vf_index, f"mac {mac}", {"mac": _mac(mac, f"{pf} vf {vf_index} mac")}, ["mac"])

    def set_vf_vlan(self, pf: str, vf_index: int, vlan: int, qos: int, proto: VlanProto) -> None:
        what = f"vlan {vlan} qos {qos} proto {proto.name}"
        if not 0 <= vlan <= MAX_VLAN:
            raise InvalidValueError(f"{pf} vf {vf_index} {what}", f"vlan must be 0-{MAX_VLAN}")
        if not 0 <= qos <= MAX_QOS:
            raise InvalidValueError(f"{pf} vf {vf_index} {what}", f"qos must be 0-{MAX_QOS}")
        # NICs without 802.1ad refuse only that protocol; 802.1Q tags still work.
        needed = ["vlan", "vlanProto"] if proto is not VlanProto.DOT1Q else ["vlan"]
        self._update(pf, vf_index, what, {"vlan": vlan, "qos": qos, "vlan_proto": int(proto)}, needed)

    def set_vf_spoofchk(self, pf: str, vf_index: int, enabled: bool) -> None:
        self._update(pf, vf_index, f"spoofchk {_onoff(enabled)}", {"spoofchk": enabled}, ["spoofchk"])

    def set_vf_trust(self, pf: str, vf_index: int, enabled: bool) -> None:
        self._update(pf, vf_index, f"trust {_onoff(enabled)}", {"trust": enabled}, ["trust"])

    def set_vf_link_state(self, pf: str, vf_index: int, state: LinkState) -> None:
        self._update(pf, vf_index, f"state {state.name.lower()}", {"link_state": int(state)}, ["linkState"])
        # Visible on the veth: a disabled VF loses carrier (its switch-side end goes down). A pair
        # that died with a pod's namespace has no such end until it is revived; a NIC's switch
        # setting does not depend on where the VF's netdev is, so that is no error.
        peer = simnet.peer_of(self.host, self._vf_address(pf, vf_index))
        if peer is not None:
            with contextlib.suppress(LinkNotFoundError):  # also when it goes while we set it
                self._links.set_link_up(peer, state is not LinkState.DISABLE)

    def set_vf_rate(self, pf: str, vf_index: int, min_tx_rate: int, max_tx_rate: int) -> None:
        what = f"min_tx_rate {min_tx_rate} max_tx_rate {max_tx_rate}"
        if min_tx_rate < 0 or max_tx_rate < 0:
            raise InvalidValueError(f"{pf} vf {vf_index} {what}", "rates cannot be negative")
        if max_tx_rate != 0 and min_tx_rate > max_tx_rate:
            raise InvalidValueError(f"{pf} vf {vf_index} {what}", "min_tx_rate exceeds max_tx_rate")
        # A NIC without a rate limiter refuses a limit, not "no limit" (0).
        needed = (["minTxRate"] if min_tx_rate else []) + (["maxTxRate"] if max_tx_rate else [])
        self._update(pf, vf_index, what, {"min_tx_rate": min_tx_rate, "max_tx_rate": max_tx_rate}, needed)

    def _update(self, pf: str, vf_index: int, what: str, changes: SwitchChanges, needed: list[str]) -> None:
        spec = self._pf(pf)
        self._check_index(pf, spec, vf_index)
        refused = [name for name in needed if name in spec.unsupported_vf_settings]
        if refused:
            raise NotSupportedError(f"{pf} vf {vf_index} {what}", f"the NIC does not support {', '.join(refused)}")
        path = self._state_path(pf)
        with locked(path.with_suffix(".lock")):
            state = read_json(path)
            current = _encode(_decode(vf_index, state.get(str(vf_index))))
            current.update(changes)
            state[str(vf_index)] = current
            write_json_atomic(path, state, durable=False)  # a NIC keeps these in RAM too

    def _pf(self, pf: str) -> SimPF:
        self.host.refresh()  # VFs the provisioner created or removed since (another handle, maybe another process)
        number = self.host.pf_number(pf)
        if number is None:
            raise LinkNotFoundError(f"PF {pf}", f"not a PF of the simulated host at {self.host.root}")
        return self.host.spec.pfs[number]

    def _vf_address(self, pf: str, vf_index: int) -> str:
        self.host.refresh()
        number = self.host.pf_number(pf)
        if number is None:
            raise LinkNotFoundError(f"PF {pf}", f"not a PF of the simulated host at {self.host.root}")
        return self.host.vf_address(number, vf_index)

    @staticmethod
    def _check_index(pf: str, spec: SimPF, vf_index: int) -> None:
        if not 0 <= vf_index < spec.num_vfs:
            raise LinkNotFoundError(f"VF {vf_index} of {pf}", f"the PF has {spec.num_vfs} VFs")

    def _state_path(self, pf: str) -> Path:
        return self.host.root / "eswitch" / f"{pf}.json"

    # -- links: real, with the tree following them -------------------------------------
    def find_link(self, name: str, netns: str | None = None) -> LinkInfo | None:
        return self._links.find_link(name, netns)

    def links(self, netns: str | None = None) -> list[LinkInfo]:
        return self._links.links(netns)

    def move_link(self, name: str, *, src_netns: str | None, dst_netns: str | None, new_name: str,
                  index: int | None = None) -> None:
        leaving = self._pci_of_host_netdev(name) if src_netns is None else None
        # what may be on its way home: whatever the tree has away in the source namespace
        moving = [leaving] if leaving is not None else simnet.away_in(self.host, src_netns) if src_netns else []
        with self._in_flight(moving):
            self._move_link(name, leaving, src_netns=src_netns, dst_netns=dst_netns, new_name=new_name, index=index)

    @contextlib.contextmanager
    def _in_flight(self, functions: list[str]) -> Iterator[None]:
        with self._moving_lock:
            self._moving.update(functions)
        try:
            yield
        finally:
            with self._moving_lock:
                self._moving.subtract(functions)

    def _move_link(self, name: str, leaving: str | None, *, src_netns: str | None, dst_netns: str | None,
                   new_name: str, index: int | None) -> None:
        if leaving is not None and dst_netns is not None:
            # recorded before the kernel moves it: a process killed right after the move still
            # leaves the function where `return_vfs_of_dead_namespaces` looks
            with simnet.tree_lock(self.host):
                simnet.note_away(self.host, leaving, dst_netns, new_name)
        arrival = self._host_links.expect_arrival(name, new_name) if dst_netns is None else None
        try:
            self._links.move_link(name, src_netns=src_netns, dst_netns=dst_netns, new_name=new_name, index=index)
        except BaseException:
            if arrival is not None:
                self._host_links.withdraw(arrival)
            if leaving is not None and dst_netns is not None:
                with simnet.tree_lock(self.host):
                    simnet.clear_away(self.host, leaving)
            raise
        if dst_netns is not None:
            if leaving is not None:
                with simnet.tree_lock(self.host):
                    self.host.set_netdev(leaving, None)
                    simnet.note_away(self.host, leaving, dst_netns, new_name)
            return
        # what arrived is whatever its peer says it is, never what the pod side called it; asked
        # before the tree lock (a kernel read waits for RTNL behind other moves: under the lock
        # every other call's tree update would wait too). The caller holds the VF's lock, so the
        # answer stays true; another process catching the tree up writes the same.
        with self._links.query(None) as query:
            arrived = simnet.pci_of_host_link(self.host, name=new_name, query=query)
        with simnet.tree_lock(self.host):
            if arrived is not None:
                self.host.set_netdev(arrived, new_name)
                simnet.clear_away(self.host, arrived)

    def rename_link(self, name: str, new_name: str, netns: str | None = None) -> None:
        # in a pod: only for the name a revived pair takes (`away`); identity never comes from it
        pci = self._pci_of_host_netdev(name) if netns is None else simnet.away_pci(self.host, netns, name)
        self._links.rename_link(name, new_name, netns)
        if pci is None:
            return
        with simnet.tree_lock(self.host):
            if netns is None:
                self.host.set_netdev(pci, new_name)
            else:
                simnet.note_away(self.host, pci, netns, new_name)

    def set_link_mac(self, name: str, mac: str, netns: str | None = None) -> None:
        self._links.set_link_mac(name, mac, netns)

    def set_link_mtu(self, name: str, mtu: int, netns: str | None = None) -> None:
        self._links.set_link_mtu(name, mtu, netns)

    def set_link_up(self, name: str, up: bool, netns: str | None = None) -> None:
        self._links.set_link_up(name, up, netns)

    def set_link_alias(self, name: str, alias: str, netns: str | None = None) -> None:
        self._links.set_link_alias(name, alias, netns)

    def add_address(self, name: str, cidr: str, netns: str | None = None) -> None:
        self._links.add_address(name, cidr, netns)

    def delete_address(self, name: str, cidr: str, netns: str | None = None) -> None:
        self._links.delete_address(name, cidr, netns)

    def addresses(self, name: str, netns: str | None = None) -> list[str]:
        return self._links.addresses(name, netns)

    def add_route(self, dst: str, gateway: str | None, name: str, netns: str | None = None) -> None:
        self._links.add_route(dst, gateway, name, netns)

    def routes(self, name: str, netns: str | None = None) -> list[RouteInfo]:
        return self._links.routes(name, netns)

    def device_netdev(self, pci_address: str) -> str | None:
        """The VF end's name when the kernel has it in the host namespace; the tree's answer for
        a function without a veth."""
        links = self.device_links(pci_address)
        if links:
            return links[0].name
        return None if simnet.has_port(self.host, pci_address) else self._tree_netdev(pci_address)

    def device_links(self, pci_address: str, netns: str | None = None) -> list[LinkInfo]:
        """The simulated counterpart of a VF's parent device: its veth's peer, which stays in the
        host namespace, says which link (ifindex) in which namespace (nsid) is the VF end. A pair
        that died with a pod's namespace has none until `return_vfs_of_dead_namespaces`."""
        from sriovkit.netlink.kernel import link_info

        with self._links.query(None) as host_query:
            end = simnet.vf_end(self.host, pci_address, host_query)
            if end is None:
                return []
            index, nsid = end
            if netns is None and nsid is not None:
                return []
            if netns is not None and (nsid is None or simnet.nsid_of(netns, host_query) != nsid):
                return []
            msg = host_query.get(index=index) if netns is None else None
        if netns is not None:
            with self._links.query(netns) as pod_query:
                msg = pod_query.get(index=index)
        if msg is None:
            return []
        return [link_info(msg)]

    # -- what the kernel does on its own -----------------------------------------------
    def return_vfs_of_dead_namespaces(self) -> list[str]:
        """The step a kernel takes by itself when a namespace holding a VF is torn down: the VF
        is back in the host namespace. A veth dies with the namespace instead, so its pair is made
        again, under the pod-side name when that is free in the host (else ``devN``). A function
        whose interface is back in the host while the tree still has it away (a process killed
        between the kernel's change and the tree's update) gets the tree brought in line. Only
        functions the switch moved out of the host are looked at, all from one dump of the host's
        links (their peers' messages decoded, no other: a dump does not queue for RTNL behind other
        calls' moves as one get per function did). Returns the names the revived pairs got."""
        away = simnet.away_functions(self.host)
        if not away:
            return []
        revived: list[str] = []
        with self._links.query(None) as query:
            peers = {simnet.peer_name(self.host, pci): pci for pci in away}
            found = {msg.get_attr("IFLA_IFNAME"): msg for msg in query.dump(peers)}
            for name, pci_address in peers.items():
                end = simnet.peer_end(self.host, pci_address, found.get(name))
                if end is None:
                    revived += simnet.SimNetwork.of(self.host).revive(pci_address)
                elif end[1] is None and not self._is_moving(pci_address):
                    self._sync_tree_if_home(pci_address, query)
        return revived

    def _is_moving(self, pci_address: str) -> bool:
        with self._moving_lock:
            return self._moving[pci_address] > 0

    def _catch_up_once(self) -> None:
        """`return_vfs_of_dead_namespaces` for an operation about to start: a run that starts after
        this call arrived serves it, so calls arriving together (a node starting many pods) share
        one run instead of each dumping the host's links; a run whose look at the host's link
        notifications finds nothing it could fix (`HostLinkWatch`) skips the dump."""
        with self._catch_up:
            self._catch_up_asked += 1
            ticket = self._catch_up_asked
            while self._catching_up and self._catch_up_done < ticket:
                self._catch_up.wait()
            if self._catch_up_done >= ticket:
                return
            self._catching_up, serves = True, self._catch_up_asked
        ran = False
        try:
            if self._host_links.worth_a_look():
                self.return_vfs_of_dead_namespaces()
            ran = True
        finally:
            with self._catch_up:
                self._catching_up = False
                if ran:
                    self._catch_up_done = max(self._catch_up_done, serves)
                self._catch_up.notify_all()

    def _sync_tree_if_home(self, pci_address: str, query: LinkQuery) -> None:
        """The tree shows the function's interface, back in the host, under the name the kernel
        has for it, and no longer has it away (a process killed between a kernel change and the
        tree's update leaves the tree behind). The kernel is asked again under the tree lock:
        another process's move records the function away before the kernel moves it and updates
        the tree under that lock after, so a look taken outside it can be stale and would put a
        pod's VF back in the host's tree."""
        with simnet.tree_lock(self.host):
            end = simnet.vf_end(self.host, pci_address, query)
            if end is None or end[1] is not None:
                return
            msg = query.get(index=end[0])
            if msg is None:
                return
            name = msg.get_attr("IFLA_IFNAME")
            if self._tree_netdev(pci_address) != name:
                self.host.set_netdev(pci_address, name)
            simnet.clear_away(self.host, pci_address)

    def await_link_changes(self, timeout_s: float) -> None:
        self._links.await_link_changes(timeout_s)
        self.return_vfs_of_dead_namespaces()

    def _tree_netdev(self, pci_address: str) -> str | None:
        net = self.host.root / "sys" / "bus" / "pci" / "devices" / pci_address / "net"
        try:
            names = sorted(os.listdir(net))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return names[0] if names else None

    def close(self) -> None:
        self._host_links.close()
        self._links.close()

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        with self._links.operation():
            self._catch_up_once()  # what happened while no call was running
            yield

    def _pci_of_host_netdev(self, name: str) -> str | None:
        """The function the tree shows as host interface `name` (``class/net``): the host side is
        ours alone, and `device_links` keeps the tree in line with the kernel."""
        try:
            target = os.readlink(self.host.root.joinpath("sys", "class", "net", name))
        except OSError:
            return None
        parts = Path(target).parts  # .../<pci address>/net/<name>
        return parts[-3] if len(parts) >= 3 and parts[-2] == "net" else None


def _decode(vf_index: int, raw: SwitchEntry | None) -> VfSettings:
    if not raw:
        return VfSettings(vf_index=vf_index)
    return VfSettings(
        vf_index=vf_index,
        mac=raw["mac"],
        vlan=raw["vlan"],
        qos=raw["qos"],
        vlan_proto=VlanProto(raw["vlan_proto"]),
        spoofchk=raw["spoofchk"],
        trust=raw["trust"],
        link_state=LinkState(raw["link_state"]),
        min_tx_rate=raw["min_tx_rate"],
        max_tx_rate=raw["max_tx_rate"],
    )


def _encode(settings: VfSettings) -> SwitchEntry:
    return SwitchEntry(mac=settings.mac, vlan=settings.vlan, qos=settings.qos, vlan_proto=int(settings.vlan_proto),
                       spoofchk=settings.spoofchk, trust=settings.trust, link_state=int(settings.link_state),
                       min_tx_rate=settings.min_tx_rate, max_tx_rate=settings.max_tx_rate)


def _mac(mac: str, what: str) -> str:
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise InvalidValueError(what, f"{mac!r} is not a MAC address")
    if int(parts[0], 16) & 1:
        raise InvalidValueError(what, f"{mac} is a multicast address")
    return mac.lower()


def _onoff(value: bool) -> str:
    return "on" if value else "off"
