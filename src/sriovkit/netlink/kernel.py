"""`KernelNetlink`: the Netlink port on the real kernel: plain rtnetlink requests for link reads and
every change (`rawlink`, `rtmsg`), pyroute2 for listing addresses and routes."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sriovkit.host.sysfs import Sysfs, list_dir
from sriovkit.netlink import netns as ns
from sriovkit.netlink import rtmsg
from sriovkit.netlink.errors import (
    InvalidValueError,
    LinkNotFoundError,
    NameInUseError,
    NamespaceError,
    NetlinkError,
    from_errno,
)
from sriovkit.netlink.model import LinkInfo, LinkState, RouteInfo, VfSettings, VlanProto
from sriovkit.netlink.rawlink import LinkQuery, open_query, possible_name
from sriovkit.netlink.vfinfo import decode_vf_list, receive_buffer_bytes

if TYPE_CHECKING:
    from pyroute2 import IPRoute

T = TypeVar("T")
IFF_UP = 0x1
RT_TABLE_MAIN = 254
# IF_OPER_* (RFC 2863 operational states), as `ip link` prints them in lower case.
_OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
_HOST_NETNS = "/proc/self/ns/net"


class KernelNetlink:
    """Links and VFs on this node's kernel. Host-namespace sockets are kept per thread.

    Reads of links go through `LinkQuery` (one request for exactly the link asked for, only the
    attributes the port reads decoded), and so do changes (`sriovkit.netlink.rtmsg` encodes them as
    pyroute2 would, without its per-request machinery); address and route listings through pyroute2."""

    def __init__(self, sysfs: Sysfs) -> None:
        self.sysfs = sysfs
        self._local = threading.local()
        self._opened: list[IPRoute | LinkQuery] = []
        self._opened_lock = threading.Lock()
        # One move at a time from this port's threads: the kernel runs moves one at a time
        # under RTNL anyway, and a thread waiting here sleeps, where threads queued on RTNL in
        # the kernel spin for it and hold up the other calls' reads and changes. Measured in
        # bench/churn.py (64 pods at once, 2 cores): ADD 0.09-0.2 s sooner, median of 3 bursts.
        self._move_lock = threading.Lock()

    # -- sockets ------------------------------------------------------------------
    def _host(self) -> IPRoute:
        ipr = getattr(self._local, "ipr", None)
        if ipr is None:
            ipr = _open(None)
            self._local.ipr = ipr
            with self._opened_lock:
                self._opened.append(ipr)
        return ipr

    def _host_query(self) -> LinkQuery:
        query = getattr(self._local, "query", None)
        if query is None:
            query = self._local.query = LinkQuery()
            with self._opened_lock:
                self._opened.append(query)
        return query

    @contextmanager
    def query(self, netns: str | None) -> Iterator[LinkQuery]:
        """A `LinkQuery` in `netns`: this thread's kept host one, the operation's one for a pod's
        namespace (see `operation`), or a fresh one closed on exit."""
        if netns is None:
            yield self._host_query()
            return
        kept = getattr(self._local, "netns_queries", None)
        if kept is not None:
            query = kept.get(netns)
            if query is None:
                query = kept[netns] = open_query(netns)
            yield query
            return
        query = open_query(netns)
        try:
            yield query
        finally:
            query.close()

    def _read(self, what: str, netns: str | None, fn: Callable[[LinkQuery], T]) -> T:
        with self.query(netns) as query, _port_errors(what):
            return fn(query)

    def route(self, netns: str | None) -> AbstractContextManager[IPRoute]:
        """A pyroute2 IPRoute in `netns` for queries beyond the port (a port layered on this one): this thread's
        kept host socket, or a fresh one in a pod's namespace (closed on exit)."""
        return self._route(netns)

    @contextmanager
    def operation(self) -> Iterator[None]:
        """One CNI operation on this thread: a socket into each pod namespace it touches is opened
        once and closed at the end, not per call (each costs a thread entering the namespace and
        pyroute2's set-up), one thread makes every socket the operation opens in a pod's namespace
        (`netns.sockets_kept`: the announcements' too), and a PF is looked up by name once
        (`_pf_index`). Nested operations share the outermost one's."""
        if getattr(self._local, "netns_sockets", None) is not None:
            yield
            return
        sockets: dict[str, IPRoute] = {}
        queries: dict[str, LinkQuery] = {}
        self._local.netns_sockets, self._local.netns_queries = sockets, queries
        self._local.pf_indexes = {}
        try:
            with ns.sockets_kept():  # and every socket in one pod namespace made by one thread
                yield
        finally:
            self._local.netns_sockets = self._local.netns_queries = self._local.pf_indexes = None
            for ipr in sockets.values():
                ipr.close()
            for query in queries.values():
                query.close()

    @contextmanager
    def _route(self, netns: str | None) -> Iterator[IPRoute]:
        kept = getattr(self._local, "netns_sockets", None) if netns is not None else None
        if kept is not None and netns is not None:
            ipr = kept.get(netns)
            if ipr is None:
                ipr = kept[netns] = _open(netns)
            try:
                yield ipr
            finally:
                discard_stray_messages(ipr)
            return
        if netns is None:
            ipr = self._host()
            try:
                yield ipr
            finally:
                discard_stray_messages(ipr)
            return
        ipr = _open(netns)
        try:
            yield ipr
        finally:
            ipr.close()

    def _call(self, what: str, netns: str | None, fn: Callable[[IPRoute], T]) -> T:
        from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

        with self._route(netns) as ipr, _port_errors(what):
            try:
                return fn(ipr)
            except Pyroute2Error as exc:
                raise from_errno(exc.code, what) from None

    def _index(self, name: str, netns: str | None, query: LinkQuery | None = None) -> int:
        """The index of `name` in `netns`: asked by netlink, never by the
        SIOCGIFINDEX ioctl, which for a name that is absent makes the kernel run modprobe
        ("netdev-NAME", then "NAME") and wait for it: 0.5-0.8 s per miss in the VM lab."""
        if query is not None:
            found = query.get(name=name)
        else:
            with self.query(netns) as fresh:
                found = fresh.get(name=name)
        if found is None:
            raise LinkNotFoundError(f"interface {name}", f"not found in {_where(netns)}")
        return found.index

    def _pf_index(self, pf: str) -> int:
        """A PF's index in the host namespace, asked once per operation: an ADD sets up to six
        of its VF's settings and reads them first, a DEL restores them, each a request naming the
        PF by index. The PF is the host's, never renamed by a CNI call; by index, the settings
        of one call go to one device even if the host renames it meanwhile."""
        cache: dict[str, int] | None = getattr(self._local, "pf_indexes", None)
        if cache is None:
            return self._index(pf, None)
        index = cache.get(pf)
        if index is None:
            index = cache[pf] = self._index(pf, None)
        return index

    def _change(self, what: str, netns: str | None, link: str | int, body: Callable[[int], bytes],
                kind: int = rtmsg.RTM_NEWLINK, flags: int = 0, pf: bool = False) -> None:
        """One change request about `link` (its name, or its index) in `netns`: `body` builds it
        from the link's index. Sent on the socket the reads use (this thread's host one or the
        operation's), acknowledged before this returns. `pf`: `link` names a PF (`_pf_index`)."""
        with self.query(netns) as query, _port_errors(what):
            if isinstance(link, str):
                link = self._pf_index(link) if pf else self._index(link, netns, query)
            try:
                request = body(link)
            except ValueError as exc:  # a value the request cannot carry (a malformed MAC or address)
                raise InvalidValueError(what, str(exc)) from None
            query.change(kind, request, flags)

    def close(self) -> None:
        with self._opened_lock:
            for ipr in self._opened:
                ipr.close()
            self._opened.clear()
        self._local = threading.local()

    # -- VFs --------------------------------------------------------------------------
    def all_vf_settings(self, pf: str) -> list[VfSettings]:
        def get(query: LinkQuery) -> list[VfSettings]:
            return decode_vf_list(query.vf_list(self._pf_index(pf)))

        return self._read(f"read VFs of {pf}", None, get)

    def vf_settings(self, pf: str, vf_index: int) -> VfSettings:
        for settings in self.all_vf_settings(pf):
            if settings.vf_index == vf_index:
                return settings
        raise LinkNotFoundError(f"VF {vf_index} of {pf}", "the PF does not report this VF")

    def _set_vf(self, pf: str, vf_index: int, what: str, setting: bytes) -> None:
        self._change(f"{pf} vf {vf_index} {what}", None, pf, lambda index: rtmsg.link_change(index, attrs=[setting]),
                     pf=True)

    def set_vf_mac(self, pf: str, vf_index: int, mac: str) -> None:
        self._set_vf(pf, vf_index, f"mac {mac}", rtmsg.vf_mac(vf_index, mac))

    def set_vf_vlan(self, pf: str, vf_index: int, vlan: int, qos: int, proto: VlanProto) -> None:
        self._set_vf(pf, vf_index, f"vlan {vlan} qos {qos} proto {proto.name}",
                     rtmsg.vf_vlan(vf_index, vlan, qos, proto))

    def set_vf_spoofchk(self, pf: str, vf_index: int, enabled: bool) -> None:
        self._set_vf(pf, vf_index, f"spoofchk {_onoff(enabled)}", rtmsg.vf_spoofchk(vf_index, enabled))

    def set_vf_trust(self, pf: str, vf_index: int, enabled: bool) -> None:
        self._set_vf(pf, vf_index, f"trust {_onoff(enabled)}", rtmsg.vf_trust(vf_index, enabled))

    def set_vf_link_state(self, pf: str, vf_index: int, state: LinkState) -> None:
        self._set_vf(pf, vf_index, f"state {state.name.lower()}", rtmsg.vf_link_state(vf_index, state))

    def set_vf_rate(self, pf: str, vf_index: int, min_tx_rate: int, max_tx_rate: int) -> None:
        self._set_vf(pf, vf_index, f"min_tx_rate {min_tx_rate} max_tx_rate {max_tx_rate}",
                     rtmsg.vf_rate(vf_index, min_tx_rate, max_tx_rate))

    # -- links --------------------------------------------------------------------------
    def find_link(self, name: str, netns: str | None = None) -> LinkInfo | None:
        if not possible_name(name):
            return None

        def get(query: LinkQuery) -> LinkInfo | None:
            msg = query.get(name=name)
            return _link_info(msg) if msg is not None else None

        return self._read(f"look up {name} in {_where(netns)}", netns, get)

    def links(self, netns: str | None = None) -> list[LinkInfo]:
        return self._read(f"list links in {_where(netns)}", netns, lambda query: [_link_info(m) for m in query.dump()])

    def move_link(self, name: str, *, src_netns: str | None, dst_netns: str | None, new_name: str,
                  index: int | None = None) -> None:
        what = f"move {name} from {_where(src_netns)} to {_where(dst_netns)} as {new_name}"
        with self._move_lock:
            # The kernel moves first and renames second, and uses the new name on
            # the way only when the old one collides: if the rename then fails, the
            # link is left in the target under its old name. Refuse a taken name
            # up front, and undo such a half move if the name is taken meanwhile.
            new_taken, old_name_was_there = self._read(
                f"look up {new_name} in {_where(dst_netns)}", dst_netns,
                lambda query: (query.get(name=new_name) is not None, query.get(name=name) is not None))
            if new_taken:
                raise NameInUseError(what, f"{new_name} already exists in {_where(dst_netns)}")
            try:
                with _netns_fd(dst_netns) as fd:
                    self._change(what, src_netns, index if index is not None else name,
                                 lambda i: rtmsg.link_change(i, attrs=[rtmsg.net_ns_fd(fd), rtmsg.ifname(new_name)]))
            except NetlinkError:
                if not old_name_was_there and self.find_link(name, dst_netns) is not None:
                    with _netns_fd(src_netns) as back:
                        self._change(f"undo half move of {name}", dst_netns, name,
                                     lambda i: rtmsg.link_change(i, attrs=[rtmsg.net_ns_fd(back)]))
                raise

    def rename_link(self, name: str, new_name: str, netns: str | None = None) -> None:
        what = f"rename {name} to {new_name} in {_where(netns)}"
        self._change(what, netns, name, lambda i: rtmsg.link_change(i, up=False))
        self._change(what, netns, name, lambda i: rtmsg.link_change(i, attrs=[rtmsg.ifname(new_name)]))

    def set_link_mac(self, name: str, mac: str, netns: str | None = None) -> None:
        self._change(f"set {name} mac {mac}", netns, name, lambda i: rtmsg.link_change(i, attrs=[rtmsg.address(mac)]))

    def set_link_mtu(self, name: str, mtu: int, netns: str | None = None) -> None:
        self._change(f"set {name} mtu {mtu}", netns, name, lambda i: rtmsg.link_change(i, attrs=[rtmsg.mtu(mtu)]))

    def set_link_up(self, name: str, up: bool, netns: str | None = None) -> None:
        self._change(f"set {name} {'up' if up else 'down'}", netns, name, lambda i: rtmsg.link_change(i, up=up))

    def set_link_alias(self, name: str, alias: str, netns: str | None = None) -> None:
        self._change(f"set {name} alias {alias!r}", netns, name,
                     lambda i: rtmsg.link_change(i, attrs=[rtmsg.ifalias(alias)]))

    def add_address(self, name: str, cidr: str, netns: str | None = None) -> None:
        self._address("add", name, cidr, netns)

    def delete_address(self, name: str, cidr: str, netns: str | None = None) -> None:
        self._address("del", name, cidr, netns)

    def _address(self, command: str, name: str, cidr: str, netns: str | None) -> None:
        if not cidr.partition("/")[2].isdigit():
            raise InvalidValueError(f"address {cidr!r}", "expected address/prefix-length")
        adding = command == "add"
        what = f"{'add' if adding else 'delete'} address {cidr} {'to' if adding else 'from'} {name} in {_where(netns)}"
        kind, flags = (rtmsg.RTM_NEWADDR, rtmsg.NLM_F_CREATE | rtmsg.NLM_F_EXCL) if adding else (rtmsg.RTM_DELADDR, 0)
        self._change(what, netns, name, lambda i: rtmsg.address_change(i, cidr), kind, flags)

    def addresses(self, name: str, netns: str | None = None) -> list[str]:
        def get(ipr: IPRoute) -> list[str]:
            index = self._index(name, netns)
            return [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in ipr.get_addr(index=index)]

        return self._call(f"list addresses of {name}", netns, get)

    def add_route(self, dst: str, gateway: str | None, name: str, netns: str | None = None) -> None:
        self._change(f"add route {dst} via {gateway or name} in {_where(netns)}", netns, name,
                     lambda i: rtmsg.route_add(dst, gateway, i), rtmsg.RTM_NEWROUTE,
                     rtmsg.NLM_F_CREATE | rtmsg.NLM_F_EXCL)

    def routes(self, name: str, netns: str | None = None) -> list[RouteInfo]:
        def get(ipr: IPRoute) -> list[RouteInfo]:
            index = self._index(name, netns)
            found = []
            for family in (socket.AF_INET, socket.AF_INET6):
                found += [_route_info(m) for m in ipr.get_routes(family=family, oif=index, table=RT_TABLE_MAIN)]
            return found

        return self._call(f"list routes of {name} in {_where(netns)}", netns, get)

    def await_link_changes(self, timeout_s: float) -> None:
        time.sleep(timeout_s)  # the kernel changes links by itself; the caller's next query sees it

    def device_netdev(self, pci_address: str) -> str | None:
        names = list_dir(os.path.join(self.sysfs.pci_device_dir(pci_address), "net"))
        return names[0] if names else None

    def device_links(self, pci_address: str, netns: str | None = None) -> list[LinkInfo]:
        if netns is None:
            return self._host_device_links(pci_address)

        def matching(query: LinkQuery) -> list[LinkInfo]:
            found = []
            for msg in query.dump():
                parent = _pci_parent(msg)
                if parent is None and _may_lack_parent_attr(msg):
                    parent = _bus_info(netns, msg.get_attr("IFLA_IFNAME"))
                if parent == pci_address:
                    found.append(_link_info(msg))
            return found

        return self._read(f"list links of {pci_address} in {_where(netns)}", netns, matching)

    def _host_device_links(self, pci_address: str) -> list[LinkInfo]:
        """The host's sysfs names the function's netdevs (its `net/` entries, which are the
        kernel's); each is then read by name and kept only if the kernel still says so."""
        found = []
        for name in list_dir(os.path.join(self.sysfs.pci_device_dir(pci_address), "net")):
            if not possible_name(name):
                continue
            msg = self._read(f"look up {name} in host netns", None, partial(_get_by_name, name=name))
            if msg is None:
                continue  # renamed or moved between the two looks
            parent = _pci_parent(msg)
            if parent == pci_address or (parent is None and _may_lack_parent_attr(msg)):
                found.append(_link_info(msg))
        return found


@contextmanager
def _port_errors(what: str) -> Iterator[None]:
    """The kernel's refusals in the block as the port's errors, named by `what`. An error the port
    raised itself (no errno: a link not found by name, a value refused before any request) and a
    namespace that cannot be entered keep their own words."""
    try:
        yield
    except NamespaceError:
        raise
    except NetlinkError as exc:
        if exc.errno is None:
            raise
        raise from_errno(exc.errno, what) from None
    except OSError as exc:
        raise from_errno(exc.errno or 0, what) from None


@contextmanager
def _netns_fd(netns: str | None) -> Iterator[int]:
    """An open descriptor of the namespace at `netns` (None: ours, the host's)."""
    path = netns if netns is not None else _HOST_NETNS
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NamespaceError(f"netns {path}", exc.strerror or str(exc), exc.errno) from None
    try:
        yield fd
    finally:
        os.close(fd)


def vf_vlan_spec(vf_index: int, vlan: int, qos: int, proto: VlanProto) -> dict[str, Any]:
    """pyroute2's ``vf=`` argument for a VF VLAN. 802.1Q goes as IFLA_VF_VLAN (what `ip link set
    PF vf N vlan V qos Q` sends, and all that drivers without 802.1ad support accept); only 802.1ad
    needs IFLA_VF_VLAN_LIST, whose entries pyroute2 encodes too short unless padded."""
    if proto is VlanProto.DOT1Q:
        return {"vf": vf_index, "vlan": {"vlan": vlan, "qos": qos}}
    pad_vlan_info()
    return {"vf": vf_index, "vlan": [{"vlan": vlan, "qos": qos, "proto": int(proto)}]}


def pad_vlan_info() -> None:
    """pyroute2 0.9 encodes IFLA_VF_VLAN_INFO as 14 bytes, but the kernel's struct
    ifla_vf_vlan_info is 16 (padded), and rtnetlink refuses a shorter attribute with EINVAL.
    Appending the padding to pyroute2's field list makes it send what the kernel expects; decoding
    is unaffected. Idempotent."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    info = ifinfmsg.vflist.vfinfo.vf_vlist.ivvi
    if not any(name == "__pad" for name, _ in info.fields):
        info.fields = (*info.fields, ("__pad", "2x"))


def discard_stray_messages(ipr: IPRoute) -> int:
    """Drop what arrived on `ipr` that no request of ours will read; returns how many.

    pyroute2 0.9 sends a "get" with NLM_F_ACK, stops reading at the reply, and files the kernel's
    ACK that follows under "no request" (its root queue), which only a broadcast listener would
    read. On a socket kept for the agent's lifetime that is one message per lookup, kept for ever:
    the agent's memory grew with every CNI call. Our sockets subscribe to no broadcast group, so
    anything there is a stray reply."""
    queue = getattr(getattr(getattr(ipr, "asyncore", None), "local", None), "msg_queue", None)
    root = getattr(queue, "root", None)
    dropped = 0
    while root is not None and not root.empty():
        root.get_nowait()
        root.task_done()
        dropped += 1
    return dropped



def _get_by_name(query: LinkQuery, *, name: str) -> Any:
    return query.get(name=name)


def open_route(netns: str | None) -> IPRoute:
    """A pyroute2 IPRoute bound to `netns` (None: the caller's); the caller closes it."""
    return _open(netns)


def link_info(msg: Any) -> LinkInfo:
    """A link message as the port's LinkInfo."""
    return _link_info(msg)


def _open(netns: str | None) -> IPRoute:
    # Imported here, not at module level: pyroute2 costs ~0.1-0.2 s to import,
    # which entry points that fail validation (or never touch netlink) should not pay.
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

    sock = ns.socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_DGRAM, rtmsg.NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes())
        return IPRoute(use_socket=sock)
    except (OSError, Pyroute2Error) as exc:
        sock.close()
        raise NetlinkError(f"netlink socket in {_where(netns)}", str(exc)) from None


def _pci_parent(msg: Any) -> str | None:
    """The PCI function the kernel says the link belongs to (Linux 5.16+ reports it)."""
    if msg.get_attr("IFLA_PARENT_DEV_BUS_NAME") != "pci":
        return None
    return msg.get_attr("IFLA_PARENT_DEV_NAME") or None


def _may_lack_parent_attr(msg: Any) -> bool:
    """A hardware link on a kernel too old to report its parent device: no parent attribute at all
    (not merely another bus), not virtual (veths, bridges... have a kind), not loopback."""
    return (msg.get_attr("IFLA_PARENT_DEV_NAME") is None and _kind(msg) is None
            and msg.get_attr("IFLA_IFNAME") != "lo")


SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 3
_DRVINFO_BYTES = 196  # struct ethtool_drvinfo
_BUS_INFO = slice(100, 132)  # its bus_info field: after cmd, driver, version and fw_version


def _bus_info(netns: str | None, name: str) -> str | None:
    """ethtool's bus_info for `name` (its driver's word on the PCI address): the fallback for
    kernels without IFLA_PARENT_DEV_NAME."""
    import ctypes

    drvinfo = ctypes.create_string_buffer(_DRVINFO_BYTES)
    struct.pack_into("I", drvinfo, 0, ETHTOOL_GDRVINFO)
    request = struct.pack("16sP", name.encode()[:15], ctypes.addressof(drvinfo)).ljust(40, b"\0")
    try:
        sock = ns.socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM)
    except (OSError, NetlinkError):
        return None
    with sock:
        try:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
        except OSError:
            return None
    return drvinfo.raw[_BUS_INFO].split(b"\0", 1)[0].decode(errors="replace") or None


def _kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _perm_mac(msg: Any) -> str | None:
    mac = msg.get_attr("IFLA_PERM_ADDRESS")
    return mac if mac and mac != "00:00:00:00:00:00" else None


def _link_info(msg: Any) -> LinkInfo:
    return LinkInfo(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        up=bool(msg["flags"] & IFF_UP),
        alias=msg.get_attr("IFLA_IFALIAS") or None,
        operstate=_operstate(msg.get_attr("IFLA_OPERSTATE")),
        link_index=msg.get_attr("IFLA_LINK"),
        perm_mac=_perm_mac(msg),
        kind=_kind(msg),
    )


def _operstate(value: Any) -> str:
    if isinstance(value, int):
        return _OPERSTATES[value] if 0 <= value < len(_OPERSTATES) else "unknown"
    return str(value or "unknown").lower()


def _route_info(msg: Any) -> RouteInfo:
    dst = msg.get_attr("RTA_DST")
    if dst is None:
        dst = "0.0.0.0" if msg["family"] == socket.AF_INET else "::"
    return RouteInfo(dst=f"{dst}/{msg['dst_len']}", gateway=msg.get_attr("RTA_GATEWAY"))


def _where(netns: str | None) -> str:
    return "host netns" if netns is None else f"netns {netns}"


def _onoff(value: bool) -> str:
    return "on" if value else "off"
