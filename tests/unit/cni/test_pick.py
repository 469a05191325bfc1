"""The pure choice of a VF from a PF, and the seeds' netconf fields."""

from __future__ import annotations

import pytest

from sriovkit.cni.netconf import parse_netconf
from sriovkit.cni.pick import candidate_vfs
from sriovkit.cni.spec import CniError, ErrorCode

VFS = [(0, "0000:11:00.1"), (1, "0000:11:00.2"), (2, "0000:11:00.3"), (3, "0000:11:00.4")]


def test_lowest_index_first_without_held_and_pooled() -> None:
    held = {"0000:11:00.1": "container a as net1"}
    pooled = {"0000:11:00.3": "intel.com/x"}
    assert candidate_vfs("eth0", VFS, held, pooled) == ["0000:11:00.2", "0000:11:00.4"]
    assert candidate_vfs("eth0", list(reversed(VFS)), {}, {})[0] == "0000:11:00.4"  # the order given is kept


def test_every_vf_held_names_the_holders() -> None:
    held = {vf: f"container c{i} as net1" for i, vf in VFS}
    with pytest.raises(CniError) as err:
        candidate_vfs("eth0", VFS, held, {})
    assert err.value.code == ErrorCode.DEVICE_UNUSABLE and err.value.msg == "PF eth0: all 4 VFs are attached"
    assert "0000:11:00.4 to container c3 as net1" in err.value.details


def test_no_vf_outside_the_pools_names_the_pools() -> None:
    pooled = {vf: ("intel.com/a" if i < 2 else "example.com/b") for i, vf in VFS[1:]}
    with pytest.raises(CniError) as err:
        candidate_vfs("eth0", VFS, {"0000:11:00.1": "container x as net1"}, pooled)
    assert err.value.msg == "PF eth0 has no VF outside the agent's pools"
    assert "pool example.com/b, intel.com/a" in err.value.details and "and 1 are attached" in err.value.details


def test_a_pf_without_vfs_has_no_candidates() -> None:
    with pytest.raises(CniError, match="has no VFs"):
        candidate_vfs("eth0", [], {}, {})


BASE = {"cniVersion": "1.0.0", "name": "n", "type": "sriov"}


def test_seed_fields_map_onto_ours() -> None:
    conf = parse_netconf({**BASE, "if0": "eth0", "if0name": "vf0", "l2enable": True, "cniDir": "/run/x/",
                          "dpdk": {"kernel_driver": "ixgbevf", "dpdk_driver": "vfio-pci", "dpdk_tool": "/bin/t"}})
    assert (conf.pf, conf.device_id, conf.pod_ifname, conf.l2enable) == ("eth0", None, "vf0", True)
    assert (conf.driver, conf.kernel_driver, conf.cni_dir) == ("vfio-pci", "ixgbevf", "/run/x")
    assert any("dpdk_tool" in w for w in conf.warnings)


def test_master_any_case_and_deviceid_wins() -> None:
    assert parse_netconf({**BASE, "MASTER": "eth1"}).pf == "eth1"
    conf = parse_netconf({**BASE, "master": "eth1", "deviceID": "0000:11:00.2"})
    assert (conf.pf, conf.device_id) == (None, "0000:11:00.2") and any("wins" in w for w in conf.warnings)


@pytest.mark.parametrize(("extra", "field"), [
    ({"if0": "a/b"}, "if0"), ({"if0": "eth0", "master": "eth1"}, "master"),
    ({"if0": "eth0", "if0name": "x" * 16}, "if0name"),
    ({"if0": "eth0", "cniDir": "relative"}, "cniDir"), ({"if0": "eth0", "cniDir": "/a/../b"}, "cniDir"),
    ({"if0": "eth0", "dpdk": {"dpdk_driver": "vfio pci"}}, "dpdk.dpdk_driver"),
    ({"if0": "eth0", "driver": "igb_uio", "dpdk": {"dpdk_driver": "vfio-pci"}}, "dpdk.dpdk_driver"),
    ({"if0": "eth0", "l2enable": "yes"}, "l2enable"), ({}, "deviceID"),
])
def test_bad_seed_fields_are_refused_naming_the_field(extra: dict[str, object], field: str) -> None:
    with pytest.raises(CniError) as err:
        parse_netconf({**BASE, **extra})
    assert err.value.code == ErrorCode.INVALID_CONFIG and field in err.value.details
