"""ADD reads each device's sysfs entry once per call (issue 14 §6): counted from the interpreter's
audit events (every file opened under the simulated host's root while one ADD runs)."""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Callable, Iterator

import pytest

_listeners: list[Callable[[str, tuple[object, ...]], None]] = []
sys.addaudithook(lambda event, args: [listen(event, args) for listen in list(_listeners)])  # cannot be removed


@pytest.fixture
def uevent_reads(node) -> Iterator[collections.Counter[str]]:
    """PCI address -> how often its `uevent` (what discovery reads first of a device) was opened."""
    devices = os.path.join(str(node.host.root), "sys", "bus", "pci", "devices") + os.sep
    reads: collections.Counter[str] = collections.Counter()

    def listen(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and isinstance(args[0], str) and args[0].startswith(devices):
            address, _, rest = args[0][len(devices):].partition(os.sep)
            if rest == "uevent":
                reads[address] += 1

    _listeners.append(listen)
    yield reads
    _listeners.remove(listen)


def test_add_by_device_id_reads_the_vf_once(node, netns, uevent_reads) -> None:
    pod = netns()
    conf = node.conf(0, ipam=node.host_local())
    assert node.run("ADD", conf, pod)[1] == 0
    reads = dict(uevent_reads)
    assert node.run("DEL", conf, pod) == (None, 0)
    assert reads == {node.vf(0): 1}


def test_add_picking_a_vf_of_the_pf_reads_the_pf_and_the_picked_vf_once(node, netns, uevent_reads) -> None:
    """The seeds' mode (netconf names the PF): the VF checked while picking it is the one attached."""
    pod = netns()
    conf = {"cniVersion": "1.0.0", "name": "sriov-net", "type": "sriov", "if0": node.pf}
    assert node.run("ADD", conf, pod)[1] == 0
    reads = dict(uevent_reads)
    assert node.run("DEL", conf, pod) == (None, 0)
    assert reads == {node.host.pf_address(0): 1, node.vf(0): 1}
