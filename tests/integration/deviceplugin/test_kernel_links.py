"""The real-kernel side of health: operstate of real interfaces under /sys and
netlink link events waking the watcher (root: creates a veth pair)."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from sriovkit.deviceplugin.health import KernelLinkEvents, read_link_states
from sriovkit.host.sysfs import Sysfs
from tests.support.kernel import VethPair, veth_pair
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


def _wakes_for(wake: threading.Event, name: str) -> bool:
    """Flip `name` until the watcher wakes (its subscription is made in its reader thread)."""
    for state in ("up", "down", "up", "down", "up"):
        wake.clear()
        subprocess.run(["ip", "link", "set", name, state], check=True)
        if wake.wait(1.0):
            return True
    return False


def test_link_events_wake_the_watcher(veth: str) -> None:
    wake = threading.Event()
    events = KernelLinkEvents(wake, lambda: {veth})
    events.start()
    try:
        assert _wakes_for(wake, veth)
    finally:
        events.stop()


def test_links_it_does_not_watch_leave_it_asleep(veth: str) -> None:
    """Pod veths and VFs moving in and out of pods change links all the time: only a watched
    link (a PF whose link decides a pool's health) wakes the watch loop."""
    wake = threading.Event()
    events = KernelLinkEvents(wake, lambda: {veth})
    with veth_pair() as other:
        events.start()
        try:
            assert _wakes_for(wake, veth)  # subscribed
            wake.clear()
            for state in ("up", "down", "up", "down"):
                subprocess.run(["ip", "link", "set", other.name, state], check=True)
            with veth_pair():  # links created and deleted
                pass
            time.sleep(0.5)  # the notifications arrive within milliseconds; the reader has seen them
            assert not wake.is_set()
            subprocess.run(["ip", "link", "set", veth, "down"], check=True)
            assert wake.wait(2.0)
        finally:
            events.stop()
