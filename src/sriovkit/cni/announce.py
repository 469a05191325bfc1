"""Tell the pod's neighbours its new addresses: gratuitous ARP, unsolicited NA.

An address reused by another pod is cached by its neighbours with the old
pod's MAC; the kernel announces only on link up or MAC change, not on this, so
the plugin sends one announcement per address. Best effort: a failure is
logged by the caller, never fatal.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from sriovkit.netlink import netns as ns

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARP_REQUEST = 1
ICMPV6_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2
ALL_NODES = "ff02::1"
BROADCAST = b"\xff" * 6


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
    """ICMPv6 neighbour advertisement body (the kernel fills the checksum)."""
    target = ipaddress.IPv6Address(ip).packed
    header = struct.pack("!BBHI", ICMPV6_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE)
    option = struct.pack("!BB", ND_OPT_TARGET_LLADDR, 1) + _mac_bytes(mac)
    return header + target + option


def announce(netns_path: str, ifname: str, mac: str, addresses: list[str]) -> list[str]:
    """Send one announcement per address; returns the addresses that failed, with why."""
    failed: list[str] = []
    for cidr in addresses:
        ip = ipaddress.ip_interface(cidr).ip
        try:
            if ip.version == 4:
                _send_garp(netns_path, ifname, mac, str(ip))
            else:
                _send_na(netns_path, ifname, mac, str(ip))
        except OSError as exc:
            failed.append(f"{ip}: {exc.strerror or exc}")
    return failed


def _send_garp(netns_path: str, ifname: str, mac: str, ip: str) -> None:
    sock = ns.socket_in_netns(netns_path, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    with sock:
        sock.bind((ifname, ETH_P_ARP))
        sock.send(garp_frame(mac, ip))


def _send_na(netns_path: str, ifname: str, mac: str, ip: str) -> None:
    sock = ns.socket_in_netns(netns_path, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        # the scope is the interface index inside the pod's namespace, not ours
        scope = ns.run_in_netns(netns_path, lambda: socket.if_nametoindex(ifname))
        sock.sendto(unsolicited_na(mac, ip), (ALL_NODES, 0, 0, scope))
