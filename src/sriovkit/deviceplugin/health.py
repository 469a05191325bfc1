"""Device health and cheap change detection for the device plugin.

Health follows the PF's link: a VF whose PF link is down is Unhealthy, and
Healthy again when the link comes back. A VF whose own interface is absent
from the host (moved into a pod's namespace) is *not* unhealthy: it is in use.

Link state is read from ``sys/class/net/<if>/operstate`` under the host root,
which on a real node is the kernel's own view and under a test's host root a
plain file, so both are served by the same code. On a real node, netlink
link events (pyroute2) only wake the watcher early; they never decide health.
Sysfs cannot be watched with inotify, so VF counts are polled: one small read
per PF.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Container, Iterable, Mapping

from sriovkit.host.model import HostSnapshot, PciDevice
from sriovkit.host.sysfs import Sysfs, read_int, read_text
from sriovkit.netlink.linkevents import LinkEvents
from sriovkit.resources.selectors import Device

log = logging.getLogger(__name__)

HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
# operstates that mean "no carrier"; "unknown" (veth, some drivers) counts as up
_DOWN_STATES = frozenset({"down", "lowerlayerdown", "notpresent"})


def link_netdev(dev: Device) -> str | None:
    """The interface whose link decides `dev`'s health: the PF's for a VF."""
    if isinstance(dev, PciDevice) and dev.is_vf:
        return dev.pf_netdev
    return dev.pf_netdev if dev.netdev is None else dev.netdev


def is_healthy(dev: Device, link_up: Mapping[str, bool]) -> bool:
    netdev = link_netdev(dev)
    return netdev is None or link_up.get(netdev, True)


def read_link_states(sysfs: Sysfs, netdevs: Iterable[str]) -> dict[str, bool]:
    """Up or not for each interface; an interface without operstate is left out."""
    states: dict[str, bool] = {}
    for name in netdevs:
        text = read_text(os.path.join(sysfs.net_class_dir(name), "operstate"))
        if text is not None:
            states[name] = text.lower() not in _DOWN_STATES
    return states


def read_vf_counts(sysfs: Sysfs, pf_addresses: Iterable[str]) -> dict[str, int | None]:
    return {a: read_int(os.path.join(sysfs.pci_device_dir(a), "sriov_numvfs")) for a in pf_addresses}


def sriov_pfs(snapshot: HostSnapshot) -> list[str]:
    return [d.pci_address for d in snapshot.physical_functions()]


class KernelLinkEvents:
    """Wakes `wake` when the kernel reports a change of a link `watched()` names (the netdevs whose
    link decides a pool's health), so a PF going down on a real node is seen at once rather than
    at the next poll. The others are ignored: every pod start and every VF moving into or out of a
    pod sends link notifications too, and waking the watch loop for each of them cost a CNI call
    on the same node a poll of its own (and the GIL) for nothing. Notifications the kernel dropped
    wake it too: any link may have changed."""

    def __init__(self, wake: threading.Event, watched: Callable[[], Container[str]]) -> None:
        self.wake = wake
        self.watched = watched
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="link-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            events = LinkEvents()
        except OSError as exc:  # no netlink here: polling alone still works
            log.warning("netlink link events unavailable, polling only: %s", exc)
            return
        with contextlib.closing(events):
            while not self._stopping.is_set():
                try:
                    names = events.changed()
                except OSError as exc:
                    if not self._stopping.is_set():
                        log.warning("netlink link events stopped (%s); polling only", exc)
                    return
                if names is None or self._concerns(names):
                    self.wake.set()

    def _concerns(self, names: list[str]) -> bool:
        watched = self.watched()
        return any(name in watched for name in names)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            # the reader looks at the flag at least every half second (its socket's timeout);
            # it is a daemon thread, so a stop does not wait for it longer than this
            self._thread.join(timeout=0.2)
