"""Real interfaces for a simulated host: veths that play its VFs, bridges that play its PFs.

For each PF a Linux bridge named like the PF's interface stands for the PF and
its embedded switch. For each VF with a netdev a veth pair: the end named like
the VF's interface (the tree's name) is what the CNI moves into pods; the other
end (the "peer", a short hashed name) stays in the host namespace, enslaved to
the PF's bridge. Deleting the peer deletes the pair wherever the VF end is now,
which is how `destroy` reaches interfaces sitting in pods' namespaces. A PF
without VFs is a veth itself (bridges cannot leave the host namespace, and a
PF passthrough moves the PF's interface into a pod).

The peer is the VF end's identity, as a real VF's parent PCI device is its
own: it stays in the host namespace, where no pod can touch it, named by a hash
of the function and carrying an alias that names the function. The kernel says
where the other end of a pair is (the peer's IFLA_LINK and IFLA_LINK_NETNSID),
so the VF end is found in whatever namespace and under whatever name it now
is, and a link a pod made itself never matches (its peer is in the pod).
What was made is recorded in ``<root>/simnet.json`` so another process can tear
it down (`SimNetwork.of`).

Names, aliases and the group derive from the host's id, kept in ``<root>/simnet-id``
when the network is made, never from where the tree is now: the agent in upstream's
device-plugin pod sees the node's directory under another path than the process that
made the veths, and must find the same interfaces.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict

from sriovkit.host.statefile import locked, read_json, write_json_atomic
from sriovkit.netlink.errors import LinkNotFoundError, NetlinkError, from_errno
from sriovkit.sim.host import SimulatedHost

if TYPE_CHECKING:
    from pathlib import Path

    from pyroute2 import IPRoute

    from sriovkit.netlink.rawlink import LinkMessage, LinkQuery

ALIAS_PREFIX = "sriovkit-sim"
_RECORD = "simnet.json"
_ID = "simnet-id"
# pci address -> {"netns": path, "name": name}: where a function's interface is while
# away from the host namespace, as far as moves and renames through the switch tell.
_AWAY = "away.json"
_RECORD_BATCH = 128


@dataclass(frozen=True, slots=True)
class SimPort:
    """One veth pair standing for a PCI function's interface (recorded in ``simnet.json``)."""

    pci_address: str
    netdev: str  # the VF end, named as the tree names the function
    peer: str  # the host-side end (in the PF's bridge, if any)
    bridge: str | None
    mac: str


class _Away(TypedDict):
    """Where a function's interface is while it is outside the host namespace (``away.json``,
    keyed by PCI address)."""

    netns: str
    name: str


def _read_away(path: Path) -> dict[str, _Away]:
    away: dict[str, _Away] = read_json(path)
    return away


def tree_lock(host: SimulatedHost) -> AbstractContextManager[None]:
    """Serializes changes to the host's tree and away record across processes (not reentrant)."""
    return locked(host.root / "eswitch" / "tree.lock")


def host_id(host: SimulatedHost) -> str:
    """The id the host's interfaces are named by: the one its tree keeps, else (no network made
    yet, or a tree made before the id was kept) its root as this process sees it. Once read from
    the tree it is kept on `host` (it never changes: a lookup by PCI address reads it several times)."""
    if host.network_id is not None:
        return host.network_id
    try:
        kept = (host.root / _ID).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        kept = ""
    if not kept:
        return str(host.root.resolve())
    host.network_id = kept
    return kept


def _keep_host_id(host: SimulatedHost) -> None:
    """Fix the id before any interface is named by it (the root's path where the network is made:
    a tree from before the id was kept names its interfaces so too)."""
    if not (host.root / _ID).exists():
        (host.root / _ID).write_text(host_id(host) + "\n")


_PEER_PREFIX, _PEER_DIGITS = "sk", 13  # a peer's name: the prefix and that many hex digits (15 in all)


def peer_name(host: SimulatedHost, pci_address: str) -> str:
    """A 15-character name unique to this host and function."""
    digest = hashlib.sha256(f"{host_id(host)}|{pci_address}".encode()).hexdigest()
    return f"{_PEER_PREFIX}{digest[:_PEER_DIGITS]}"


def looks_like_peer(name: str) -> bool:
    """Whether `name` is one `peer_name` could give (for any host: a simulated host's peers share
    the namespace with every other's)."""
    prefix, digits = name[:len(_PEER_PREFIX)], name[len(_PEER_PREFIX):]
    return prefix == _PEER_PREFIX and len(digits) == _PEER_DIGITS and all(c in "0123456789abcdef" for c in digits)


def vf_mac(host: SimulatedHost, pci_address: str) -> str:
    """A deterministic locally administered unicast MAC for the function."""
    digest = hashlib.sha256(f"mac|{host_id(host)}|{pci_address}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def link_group(host: SimulatedHost) -> int:
    """The interface group (IFLA_GROUP) of this host's peers: one request deletes them all.

    Never 0 (every interface's default group) and unique per host.
    """
    digest = hashlib.sha256(f"group|{host_id(host)}".encode()).digest()
    return 0x10000 + int.from_bytes(digest[:4], "big") % (0x7FFFFFFF - 0x10000)


def _alias(host: SimulatedHost, pci_address: str) -> str:
    return f"{ALIAS_PREFIX} {pci_address} {host_id(host)}"


def plan_ports(host: SimulatedHost) -> tuple[list[str], list[SimPort]]:
    """The bridges and veth pairs `attach_veths` makes for `host` (pure)."""
    bridges: list[str] = []
    ports: list[SimPort] = []
    for number, pf in enumerate(host.spec.pfs):
        pf_address = host.pf_address(number)
        if pf.num_vfs == 0:
            ports.append(SimPort(pf_address, pf.name, peer_name(host, pf_address), None, vf_mac(host, pf_address)))
            continue
        bridges.append(pf.name)
        for device in host.devices():
            if device.pf_address == pf_address and device.netdev is not None:
                address = device.pci_address
                ports.append(SimPort(address, device.netdev, peer_name(host, address), pf.name, vf_mac(host, address)))
    return bridges, ports


class SimNetwork:
    """The real interfaces of one simulated host. `destroy()` removes them all."""

    def __init__(self, host: SimulatedHost, bridges: list[str], ports: list[SimPort]) -> None:
        self.host = host
        self.bridges = bridges
        self.ports = ports

    @classmethod
    def of(cls, host: SimulatedHost) -> SimNetwork:
        """What `attach_veths` recorded for `host` (possibly by another process); empty if none."""
        record = read_json(host.root / _RECORD)
        ports = [SimPort(**raw) for raw in record.get("ports", [])]
        return cls(host, list(record.get("bridges", [])), ports)

    def __enter__(self) -> SimNetwork:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.destroy()

    def destroy(self) -> None:
        """Remove every pair (through its peer) and bridge made; idempotent."""
        with _route() as ipr:
            self._delete_group(ipr)
            for port in self.ports:  # whatever the group request did not reach
                _delete(ipr, port.peer, None)
            for bridge in self.bridges:
                _delete(ipr, bridge, self._bridge_alias())
        (self.host.root / _RECORD).unlink(missing_ok=True)
        (self.host.root / "eswitch" / _AWAY).unlink(missing_ok=True)

    def _delete_group(self, ipr: IPRoute) -> None:
        """Delete all peers in one request (the kernel batches it: 256 pairs in ~0.1 s, not ~5 s).

        Only when every member of the group is ours, so a colliding group number
        can never take someone else's interfaces with it.
        """
        group = link_group(self.host)
        members = [m for m in ipr.get_links() if m.get_attr("IFLA_GROUP") == group]
        ours = {port.peer for port in self.ports}
        if members and all(m.get_attr("IFLA_IFNAME") in ours for m in members):
            with contextlib.suppress(LinkNotFoundError):
                _call(f"delete interface group {group}", lambda: ipr.link("del", index=0, group=group))

    def revive(self, pci_address: str | None = None) -> list[str]:
        """Recreate the pair of every function whose interface no longer exists anywhere.

        The kernel deletes a veth with its namespace, where a real VF would have
        come back to the host namespace, keeping its pod-side name when that is
        free there and taking ``devN`` otherwise. Returns the names given.
        """
        revived: list[str] = []
        with _route() as ipr, tree_lock(self.host):
            away_path = self.host.root / "eswitch" / _AWAY
            away = _read_away(away_path)
            for port in self.ports:
                if pci_address not in (None, port.pci_address) or ipr.link_lookup(ifname=port.peer):
                    continue
                where = away.get(port.pci_address)
                name = _free_name(ipr, (where.get("name") if where else None) or port.netdev)
                _call(f"recreate {name} for {port.pci_address}", lambda p=port, n=name: self._add_pair(ipr, p, n))
                self.host.set_netdev(port.pci_address, name)
                away.pop(port.pci_address, None)
                revived.append(name)
            if revived:
                write_json_atomic(away_path, away, durable=False)
        return revived

    def follow_tree(self) -> None:
        """Make the interfaces match the host's tree again after a PF's VF count changed (the
        provisioner writing sriov_numvfs): the pairs of VFs that went are deleted, wherever their
        VF end is, as a real VF's netdev goes with it; the new VFs get pairs, as a real NIC's new
        VFs get netdevs. A PF that gets its first VFs stops being a veth and becomes its switch's
        bridge (and back when it has none again)."""
        bridges, ports = plan_ports(self.host)
        planned = {p.pci_address: p for p in ports}
        gone = [p for p in self.ports if planned.get(p.pci_address) != p]
        old_bridges = [b for b in self.bridges if b not in bridges]
        with _route() as ipr:
            for port in gone:
                _delete(ipr, port.peer, None)
                self.ports.remove(port)
            for bridge in old_bridges:
                _delete(ipr, bridge, self._bridge_alias())
                self.bridges.remove(bridge)
        if gone or old_bridges:
            self._save()
            away_path = self.host.root / "eswitch" / _AWAY
            away = _read_away(away_path)
            for port in gone:
                away.pop(port.pci_address, None)
            write_json_atomic(away_path, away, durable=False)
        have = {p.pci_address for p in self.ports}
        self._create([b for b in bridges if b not in self.bridges], [p for p in ports if p.pci_address not in have])

    # -- building -------------------------------------------------------------------------
    def _create(self, bridges: list[str], ports: list[SimPort]) -> None:
        with _route() as ipr:
            for bridge in bridges:
                _call(f"create bridge {bridge}", lambda b=bridge: self._add_bridge(ipr, b))
                self.bridges.append(bridge)
                self._save()
            for start in range(0, len(ports), _RECORD_BATCH):
                batch = ports[start:start + _RECORD_BATCH]
                # Recorded first: the peer's hashed name is ours alone, so deleting it is always safe.
                # In batches: one rewrite of the record per pair made creation quadratic (minutes at 4096).
                self.ports.extend(batch)
                self._save()
                for port in batch:
                    what = f"create veth {port.netdev} for {port.pci_address}"
                    _call(what, lambda p=port: self._add_pair(ipr, p, p.netdev))

    def _add_bridge(self, ipr: IPRoute, name: str) -> None:
        ipr.link("add", ifname=name, kind="bridge")
        index = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=index, ifalias=self._bridge_alias())
        ipr.link("set", index=index, state="up")

    def _add_pair(self, ipr: IPRoute, port: SimPort, name: str) -> None:
        ipr.link("add", ifname=name, address=port.mac, kind="veth", peer={"ifname": port.peer})
        peer = ipr.link_lookup(ifname=port.peer)[0]
        ipr.link("set", index=peer, ifalias=_alias(self.host, port.pci_address), group=link_group(self.host))
        if port.bridge is not None:
            ipr.link("set", index=peer, master=ipr.link_lookup(ifname=port.bridge)[0])
        ipr.link("set", index=peer, state="up")

    def _bridge_alias(self) -> str:
        return f"{ALIAS_PREFIX} bridge {host_id(self.host)}"

    def _save(self) -> None:
        data = {"bridges": self.bridges, "ports": [asdict(p) for p in self.ports]}
        write_json_atomic(self.host.root / _RECORD, data)


def attach_veths(host: SimulatedHost) -> SimNetwork:
    """Create the host's bridges and veth pairs; on failure remove what was made and raise."""
    _keep_host_id(host)
    bridges, ports = plan_ports(host)
    network = SimNetwork(host, [], [])
    try:
        network._create(bridges, ports)
    except BaseException:
        network.destroy()
        raise
    return network


def has_network(host: SimulatedHost) -> bool:
    """Whether `attach_veths` made interfaces for `host` that are not destroyed yet."""
    return (host.root / _RECORD).exists()


# -- used by SimulatedSwitchNetlink ---------------------------------------------------------
def note_away(host: SimulatedHost, pci_address: str, netns: str, name: str) -> None:
    """Record where the function's interface now is outside the host (caller holds `tree_lock`)."""
    path = host.root / "eswitch" / _AWAY
    away = _read_away(path)
    away[pci_address] = {"netns": netns, "name": name}
    write_json_atomic(path, away, durable=False)


def clear_away(host: SimulatedHost, pci_address: str) -> None:
    """Forget the record once the interface is back (caller holds `tree_lock`)."""
    path = host.root / "eswitch" / _AWAY
    away = _read_away(path)
    if away.pop(pci_address, None) is not None:
        write_json_atomic(path, away, durable=False)


def away_functions(host: SimulatedHost) -> list[str]:
    """The functions whose interface the switch moved out of the host namespace, as recorded."""
    return sorted(read_json(host.root / "eswitch" / _AWAY))


def away_in(host: SimulatedHost, netns: str) -> list[str]:
    """The functions whose interface is recorded away in `netns`."""
    return sorted(pci for pci, where in _read_away(host.root / "eswitch" / _AWAY).items() if where["netns"] == netns)


def away_pci(host: SimulatedHost, netns: str, name: str) -> str | None:
    """The function whose interface is recorded as `name` in `netns`, if exactly one is."""
    found = [pci for pci, where in _read_away(host.root / "eswitch" / _AWAY).items()
             if where == {"netns": netns, "name": name}]
    return found[0] if len(found) == 1 else None


def pci_of_host_link(host: SimulatedHost, *, name: str | None = None, index: int | None = None,
                     query: LinkQuery | None = None) -> str | None:
    """The function whose VF end is the host-namespace link `name` (or `index`): its peer, in the
    host namespace too, carries the function's alias. None for any other link."""
    with _query_or(query) as route:
        msg = get_link(route, name=name, index=index)
        if msg is None or msg.get_attr("IFLA_LINK_NETNSID") is not None or not msg.get_attr("IFLA_LINK"):
            return None
        peer = get_link(route, index=msg.get_attr("IFLA_LINK"))
    if peer is None or peer.get_attr("IFLA_LINK") != msg["index"]:
        return None
    prefix, _, rest = (peer.get_attr("IFLA_IFALIAS") or "").partition(" ")
    pci_address, _, root = rest.partition(" ")
    ours = prefix == ALIAS_PREFIX and root == host_id(host)
    return pci_address if ours and peer.get_attr("IFLA_IFNAME") == peer_name(host, pci_address) else None


def vf_end(host: SimulatedHost, pci_address: str, query: LinkQuery | None = None) -> tuple[int, int | None] | None:
    """Where the function's VF end is, as the kernel reports it through the peer: (its ifindex
    there, the host's nsid for its namespace or None for the host's own). None: no peer (never
    made, or deleted with a pod's namespace)."""
    with _query_or(query) as route:
        peer = get_link(route, name=peer_name(host, pci_address))
    return peer_end(host, pci_address, peer)


def peer_end(host: SimulatedHost, pci_address: str, peer: LinkMessage | None) -> tuple[int, int | None] | None:
    """`vf_end` from the peer's message as read (None: no such link)."""
    if peer is None or peer.get_attr("IFLA_IFALIAS") != _alias(host, pci_address) or not peer.get_attr("IFLA_LINK"):
        return None
    return int(peer.get_attr("IFLA_LINK")), peer.get_attr("IFLA_LINK_NETNSID")


def nsid_of(netns: str, query: LinkQuery | None = None) -> int | None:
    """The id the host namespace knows the namespace at path `netns` by (RTM_GETNSID), if any."""
    import os

    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with _query_or(query) as route:
            try:
                return route.netnsid(fd)
            except NetlinkError:
                return None
    finally:
        os.close(fd)


@contextmanager
def _query_or(query: LinkQuery | None) -> Iterator[LinkQuery]:
    if query is not None:
        yield query
        return
    from sriovkit.netlink.rawlink import LinkQuery

    fresh = LinkQuery()
    try:
        yield fresh
    finally:
        fresh.close()


def get_link(query: LinkQuery, *, name: str | None = None, index: int | None = None) -> LinkMessage | None:
    """One RTM_GETLINK by index or name; None when there is no such link."""
    if index is None and not name:
        return None
    try:
        return query.get(index=index) if index is not None else query.get(name=name)
    except NetlinkError:
        return None


def peer_of(host: SimulatedHost, pci_address: str) -> str | None:
    """The host-side end of the function's pair, if `attach_veths` made one."""
    return next((p.peer for p in SimNetwork.of(host).ports if p.pci_address == pci_address), None)


def has_port(host: SimulatedHost, pci_address: str) -> bool:
    """Whether `attach_veths` made a pair for the function."""
    return any(p.pci_address == pci_address for p in SimNetwork.of(host).ports)


# -- pyroute2 plumbing -----------------------------------------------------------------------
@contextmanager
def _route() -> Iterator[IPRoute]:
    from pyroute2 import IPRoute  # lazy: importing pyroute2 costs ~0.1-0.2 s

    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _call(what: str, fn: Any) -> None:
    from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

    try:
        fn()
    except Pyroute2Error as exc:
        raise from_errno(exc.code, what) from None


def _delete(ipr: IPRoute, name: str, required_alias: str | None) -> None:
    """Delete `name` if it exists (and carries `required_alias`, when given: never someone else's)."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        return
    if required_alias is not None:
        alias = ipr.link("get", index=found[0])[0].get_attr("IFLA_IFALIAS")
        if alias != required_alias:
            return
    with contextlib.suppress(LinkNotFoundError):  # gone meanwhile (its pair or namespace went first)
        _call(f"delete {name}", lambda: ipr.link("del", index=found[0]))


def _free_name(ipr: IPRoute, preferred: str) -> str:
    """`preferred` if free in the host netns, else the first free ``devN`` (the kernel's choice)."""
    if not ipr.link_lookup(ifname=preferred):
        return preferred
    number = 0
    while ipr.link_lookup(ifname=f"dev{number}"):
        number += 1
    return f"dev{number}"

