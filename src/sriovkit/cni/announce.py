"""Tell the pod's neighbours its new addresses: gratuitous ARP, unsolicited NA.

An address reused by another pod is cached by its neighbours with the old
pod's MAC; the kernel announces only on link up or MAC change, not on this, so
the plugin sends one announcement per address. Best effort: a failure is
logged by the caller, never fatal.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct
import threading

from sriovkit.netlink import netns as ns
from sriovkit.netlink.ping import checksum

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ARPHRD_ETHER = 1
ARP_REQUEST = 1
ICMPV6_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2
ALL_NODES = "ff02::1"
BROADCAST = b"\xff" * 6
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def garp_frame(mac: str, ip: str) -> bytes:
    """A gratuitous ARP request: sender and target are both `ip`."""
    src = _mac_bytes(mac)
    addr = ipaddress.IPv4Address(ip).packed
    eth = BROADCAST + src + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARP_REQUEST) + src + addr + b"\x00" * 6 + addr
    return eth + arp


def unsolicited_na(mac: str, ip: str) -> bytes:
    """ICMPv6 neighbour advertisement body with the override flag; checksum left zero."""
    target = ipaddress.IPv6Address(ip).packed
    header = struct.pack("!BBHI", ICMPV6_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE)
    option = struct.pack("!BB", ND_OPT_TARGET_LLADDR, 1) + _mac_bytes(mac)
    return header + target + option


def na_frame(mac: str, ip: str) -> bytes:
    """A whole Ethernet frame: the address is still tentative (DAD) when we announce it, so the
    kernel would not let a socket send from it; a packet socket sends the frame as built."""
    src = ipaddress.IPv6Address(ip).packed
    dst = ipaddress.IPv6Address(ALL_NODES).packed
    body = bytearray(unsolicited_na(mac, ip))
    pseudo = src + dst + struct.pack("!I3xB", len(body), IPPROTO_ICMPV6)
    struct.pack_into("!H", body, 2, checksum(pseudo + bytes(body)))
    ipv6 = struct.pack("!IHBB", 6 << 28, len(body), IPPROTO_ICMPV6, 255) + src + dst
    return ALL_NODES_MAC + _mac_bytes(mac) + struct.pack("!H", ETH_P_IPV6) + ipv6 + bytes(body)


def announce(netns_path: str, ifname: str, mac: str, addresses: list[str], ifindex: int | None = None) -> list[str]:
    """Send one announcement per address; returns the addresses that failed, with why.

    One packet socket for all of them, bound to protocol 0 so it never receives, and to the
    interface by `ifindex` when it is known (a bind by name is a SIOCGIFINDEX, which for a name
    gone meanwhile makes the kernel run modprobe "netdev-NAME"). Closing a packet socket waits for
    an RCU grace period (~10 ms here); that wait happens on a short-lived thread, so the pod's ADD
    answer does not include it."""
    if not addresses:
        return []
    try:
        sock = ns.socket_in_netns(netns_path, socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as exc:
        return [f"{cidr}: {exc.strerror or exc}" for cidr in addresses]
    try:
        return _send_all(sock, ifname if ifindex is None else ifindex, mac, addresses)
    finally:
        threading.Thread(target=sock.close, name="packet-socket-close", daemon=True).start()


_libc = ctypes.CDLL(None, use_errno=True)
_SOCKADDR_LL = struct.Struct("=HHiHBB8s")  # family, protocol (network order), ifindex, hatype, pkttype, halen, addr


def bind_packet_socket(sock: socket.socket, ifindex: int) -> None:
    """bind(2) a packet socket to the interface `ifindex`, protocol 0 (Python's bind takes a name)."""
    addr = ctypes.create_string_buffer(_SOCKADDR_LL.pack(socket.AF_PACKET, 0, ifindex, 0, 0, 0, b""))
    if _libc.bind(sock.fileno(), addr, _SOCKADDR_LL.size) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _send_all(sock: socket.socket, link: str | int, mac: str, addresses: list[str]) -> list[str]:
    try:
        if isinstance(link, int):
            bind_packet_socket(sock, link)
        else:
            sock.bind((link, 0))
    except OSError as exc:
        return [f"{cidr}: {exc.strerror or exc}" for cidr in addresses]
    failed: list[str] = []
    for cidr in addresses:
        ip = ipaddress.ip_interface(cidr).ip
        frame = garp_frame(mac, str(ip)) if ip.version == 4 else na_frame(mac, str(ip))
        try:
            sock.send(frame)
        except OSError as exc:
            failed.append(f"{ip}: {exc.strerror or exc}")
    return failed
