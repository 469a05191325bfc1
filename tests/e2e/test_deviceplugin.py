"""Scenario 2 (agent + kubelet simulator on real igb VFs: registration, ListAndWatch with the
kernel's topology, Allocate env and device nodes, VFs that vanish) and scenario 7 (two PFs:
allocatePolicy packed vs spread).

The guest (guest/deviceplugin.sh + guest/dp_scenario.py) enables 6 VFs on eth0 (VF 3 bound to
vfio-pci) and 4 on eth1, runs the kubelet simulator and the agent's device plugins in one
process, allocates from each pool, then lowers eth0 to 2 VFs. Config: data/dp-agent.json.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.vmlab(guest="deviceplugin", nics=2)
PREFIX = "intel.com"


def record(guest: Any, name: str) -> Any:
    path = guest.dir / f"{name}.json"
    assert path.exists(), f"the guest never recorded {name}"
    return json.loads(path.read_text())


def vfs(guest: Any, pf: str) -> list[str]:
    return guest.step("start").vf_addresses(pf)


def test_guest_script_completed(guest):
    assert guest.returncode == 0


def test_every_pool_registers_with_the_vfs_its_selectors_name(guest):
    registered = record(guest, "registered")
    eth0, eth1 = vfs(guest, "eth0"), vfs(guest, "eth1")
    expected = {
        "igbvf_eth0": eth0[0:2],
        "igb_packed": [eth0[2], *eth1[0:2]],
        "igb_spread": [*eth0[4:6], *eth1[2:4]],
        "igb_vfio": [eth0[3]],
    }
    assert sorted(registered["registrations"]) == sorted(f"{PREFIX}/{name}" for name in expected)
    for name, addresses in expected.items():
        devices = registered["devices"][f"{PREFIX}/{name}"]
        assert sorted(devices) == sorted(addresses), name
        assert all(d["health"] == "Healthy" for d in devices.values()), name
    print(f"first registrations {registered['seconds']:.2f} s after the agent started (guest, TCG)")


def test_topology_is_what_the_kernel_reports(guest):
    step = guest.step("start")
    for resource, devices in record(guest, "registered")["devices"].items():
        for address, device in devices.items():
            numa = int(step.sysfs[address]["numa_node"])
            assert device["numa"] == ([] if numa < 0 else [numa]), (resource, address)


def test_allocate_gives_env_and_device_nodes(guest):
    allocated = record(guest, "allocated")
    net = allocated[f"{PREFIX}/igbvf_eth0"]
    (device,) = net["devices"]
    assert net["envs"]["PCIDEVICE_INTEL_COM_IGBVF_ETH0"] == device
    info = json.loads(net["envs"]["PCIDEVICE_INTEL_COM_IGBVF_ETH0_INFO"])
    assert info[device]["generic"]["deviceID"] == device
    assert net["device_nodes"] == [], "a kernel-driver VF needs no device node"


def test_a_vfio_vf_gets_its_group_node(guest):
    step = guest.step("start")
    vfio = record(guest, "allocated")[f"{PREFIX}/igb_vfio"]
    (device,) = vfio["devices"]
    group = step.sysfs[device]["iommu_group"]
    assert sorted(vfio["device_nodes"]) == sorted(["/dev/vfio/vfio", f"/dev/vfio/{group}"])
    assert group in step.vfio_nodes, "the node the container gets exists on the host"
    info = json.loads(vfio["envs"]["PCIDEVICE_INTEL_COM_IGB_VFIO_INFO"])
    assert info[device]["vfio"] == {"mount": "/dev/vfio/vfio", "dev-mount": f"/dev/vfio/{group}"}


def test_packed_fills_one_pf_and_spread_balances_across_pfs(guest):
    allocated = record(guest, "allocated")
    eth0, eth1 = set(vfs(guest, "eth0")), set(vfs(guest, "eth1"))
    packed = allocated[f"{PREFIX}/igb_packed"]["devices"]
    spread = allocated[f"{PREFIX}/igb_spread"]["devices"]
    assert len(packed) == 2 and set(packed) <= eth1, "packed: both on the one PF that has two free"
    assert len(spread) == 2 and len(set(spread) & eth0) == 1 and len(set(spread) & eth1) == 1


def test_vfs_that_vanish_leave_the_pools(guest):
    removed = record(guest, "removed")
    assert removed["seen"], "the kubelet kept seeing removed VFs as healthy"
    after = removed["after"]
    for address in removed["removed"]:
        assert not any(devices.get(address, {}).get("health") == "Healthy" for devices in after.values())
    remaining = vfs(guest, "eth0")[0:2]
    assert sorted(after[f"{PREFIX}/igbvf_eth0"]) == sorted(remaining)
    assert all(after[f"{PREFIX}/igbvf_eth0"][a]["health"] == "Healthy" for a in remaining)
    print(f"VF removal reached the kubelet {removed['seconds']:.2f} s after sriov_numvfs changed (guest, TCG)")
