"""The real-kernel side of health: operstate of real interfaces under /sys and
netlink link events waking the watcher (root: creates a veth pair)."""

from __future__ import annotations

import subprocess
import threading

import pytest

from sriovkit.deviceplugin.health import KernelLinkEvents, read_link_states
from sriovkit.host.sysfs import Sysfs
from tests.support.kernel import VethPair
from tests.support.waiting import wait_for

pytestmark = pytest.mark.root


def _settles_to(sysfs: Sysfs, name: str, up: bool) -> None:
    # the kernel updates operstate asynchronously (linkwatch), so poll for it, bounded
    wait_for(f"{name} {'up' if up else 'down'}", lambda: read_link_states(sysfs, [name]) == {name: up}, timeout=5,
             interval=0.02)


def test_link_state_of_a_real_interface(veth_pair: VethPair) -> None:
    name, peer = veth_pair
    sysfs = Sysfs()
    assert read_link_states(sysfs, [name]) == {name: False}  # created down
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    subprocess.run(["ip", "link", "set", peer, "up"], check=True)
    _settles_to(sysfs, name, True)
    subprocess.run(["ip", "link", "set", peer, "down"], check=True)  # carrier lost: lowerlayerdown
    _settles_to(sysfs, name, False)


def test_link_events_wake_the_watcher(veth: str) -> None:
    name = veth
    wake = threading.Event()
    events = KernelLinkEvents(wake)
    events.start()
    try:
        # the subscription is made in the reader thread: flip the link until it reports
        woke = False
        for state in ("up", "down", "up", "down", "up"):
            wake.clear()
            subprocess.run(["ip", "link", "set", name, state], check=True)
            if wake.wait(1.0):
                woke = True
                break
        assert woke
    finally:
        events.stop()
