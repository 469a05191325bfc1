"""Pools from simulated hosts: every selector, first-match-wins, exclusions and verdicts."""

from __future__ import annotations

import pytest

from sriovkit.resources.config import parse_config
from sriovkit.resources.pools import build_pools, taken_earlier


def pools(snapshot, *resources, routed=()):
    cfg = parse_config({"resourceList": list(resources)})
    return build_pools(snapshot, cfg, default_route_netdevs=routed)


def ids(pool_set, name="intel.com/r"):
    return pool_set.as_ids()[name]


def res(selectors, **extra):
    return {"resourceName": "r", "selectors": selectors, **extra}


@pytest.fixture
def two_vendors(make_host):
    return make_host(
        {"name": "eth0", "numVfs": 4, "vfDrivers": {"3": "vfio-pci"}},
        {"name": "ens2", "vendor": "15b3", "device": "1017", "vfDevice": "1018", "driver": "mlx5_core",
         "vfDriver": "mlx5_core", "numaNode": 1, "numVfs": 2, "rdma": True},
    )


def vfs(host, pf, *indexes):
    return [host.vf_address(pf, i) for i in indexes]


def test_empty_selector_takes_every_offerable_device(two_vendors):
    host, snap = two_vendors
    assert ids(pools(snap, res({}))) == vfs(host, 0, 0, 1, 2, 3) + vfs(host, 1, 0, 1)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"vendors": ["15b3"]}, [(1, 0), (1, 1)]),
        ({"vendors": ["8086", "15B3"]}, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]),
        ({"devices": ["1889"]}, [(0, 0), (0, 1), (0, 2), (0, 3)]),
        ({"drivers": ["vfio-pci"]}, [(0, 3)]),
        ({"drivers": ["iavf", "mlx5_core"]}, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]),
        ({"pfNames": ["eth0"]}, [(0, 0), (0, 1), (0, 2), (0, 3)]),
        ({"pfNames": ["eth0#0-1"]}, [(0, 0), (0, 1)]),
        ({"pfNames": ["eth0#3", "ens2#1"]}, [(0, 3), (1, 1)]),
        ({"pfNames": ["eth0#0,2-3"]}, [(0, 0), (0, 2), (0, 3)]),
        ({"pfNames": ["eth0#7-9"]}, []),
        ({"pfNames": ["eth"]}, []),
        ({"linkTypes": ["ether"]}, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]),
        ({"linkTypes": ["infiniband"]}, []),
        ({"isRdma": True}, [(1, 0), (1, 1)]),
        ({"isRdma": False}, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]),
        ({"vendors": ["8086"], "drivers": ["iavf"], "pfNames": ["eth0#1-3"]}, [(0, 1), (0, 2)]),
    ],
)
def test_selector_fields(two_vendors, selector, expected):
    host, snap = two_vendors
    assert ids(pools(snap, res(selector))) == sorted(host.vf_address(p, i) for p, i in expected)


def test_root_devices_with_ranges(two_vendors):
    host, snap = two_vendors
    pf0, pf1 = host.pf_address(0), host.pf_address(1)
    assert ids(pools(snap, res({"rootDevices": [pf1]}))) == vfs(host, 1, 0, 1)
    assert ids(pools(snap, res({"rootDevices": [f"{pf0}#2-3"]}))) == vfs(host, 0, 2, 3)


def test_pci_addresses(two_vendors):
    host, snap = two_vendors
    wanted = [host.vf_address(0, 2), host.vf_address(1, 0)]
    assert ids(pools(snap, res({"pciAddresses": wanted}))) == sorted(wanted)


def test_selector_list_takes_devices_matching_any(two_vendors):
    host, snap = two_vendors
    got = ids(pools(snap, res([{"drivers": ["vfio-pci"]}, {"pfNames": ["ens2#1"]}])))
    assert got == sorted(vfs(host, 0, 3) + vfs(host, 1, 1))


def test_first_resource_in_list_order_wins(two_vendors):
    host, snap = two_vendors
    result = pools(snap, {"resourceName": "a", "selectors": {"pfNames": ["eth0#0-1"]}},
                   {"resourceName": "b", "selectors": {"pfNames": ["eth0"]}})
    assert result.as_ids() == {"intel.com/a": vfs(host, 0, 0, 1), "intel.com/b": vfs(host, 0, 2, 3)}
    verdict = {v.device_id: v for v in result.verdicts}[host.vf_address(0, 0)]
    assert verdict.pool == "intel.com/a"
    assert verdict.rejections == (("intel.com/b", "already in intel.com/a (an earlier resource)"),)
    assert taken_earlier(verdict.rejections[0][1])
    other = {v.device_id: v for v in result.verdicts}[host.vf_address(0, 2)]
    assert other.pool == "intel.com/b" and other.rejections
    assert not any(taken_earlier(reason) for _, reason in other.rejections), "a selector's refusal is not a take"
    assert not taken_earlier("already in intel.com/a (an earlier resource)"), "the kind, not the text, decides"


def test_pf_with_vfs_is_never_offered_but_pf_without_vfs_is(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 2}, {"name": "eth1", "numVfs": 0})
    got = ids(pools(snap, res({})))
    assert host.pf_address(0) not in got
    assert host.pf_address(1) in got
    verdict = {v.device_id: v for v in pools(snap, res({})).verdicts}[host.pf_address(0)]
    assert verdict.pool is None and verdict.excluded == "PF with 2 VFs: its VFs are offered, not the PF"


def test_pf_passthrough_by_pf_name(make_host):
    host, snap = make_host({"name": "eth1", "numVfs": 0})
    assert ids(pools(snap, res({"pfNames": ["eth1"]}))) == [host.pf_address(0)]
    assert ids(pools(snap, res({"pfNames": ["eth1#0"]}))) == []


def test_default_route_interface_is_never_offered(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 0}, {"name": "eth1", "numVfs": 1})
    result = pools(snap, res({}), routed={"eth0", "eth1v0"})
    assert ids(result) == []
    excluded = {v.device_id: v.excluded for v in result.verdicts}
    assert excluded[host.pf_address(0)] == "interface eth0 carries the host's default route"
    assert excluded[host.vf_address(1, 0)] == "interface eth1v0 carries the host's default route"


def test_infiniband_link_type_and_pkeys(make_host):
    host, snap = make_host({"name": "ib0", "linkType": "infiniband", "rdma": True, "numVfs": 2,
                            "pkeys": ["0x8001"]})
    assert ids(pools(snap, res({"linkTypes": ["infiniband"]}))) == vfs(host, 0, 0, 1)
    assert ids(pools(snap, res({"pKeys": ["0x8001"]}))) == vfs(host, 0, 0, 1)
    assert ids(pools(snap, res({"pKeys": ["0x8002"]}))) == []


def test_need_vhost_net_depends_on_host(make_host):
    host, with_vhost = make_host({"name": "eth0", "numVfs": 1})
    _, without = make_host({"name": "eth0", "numVfs": 1}, vhost_net=False)
    assert ids(pools(with_vhost, res({"needVhostNet": True}))) == vfs(host, 0, 0)
    result = pools(without, res({"needVhostNet": True}))
    assert ids(result) == []
    assert "needVhostNet" in str(dict(result.verdicts[1].rejections)["intel.com/r"])


def test_vdpa_type_and_acpi_index(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 1, "vdpa": "virtio"},
                           {"name": "eth1", "acpiIndex": 7, "numVfs": 0})
    assert ids(pools(snap, res({"vdpaType": "virtio"}))) == vfs(host, 0, 0)
    assert ids(pools(snap, res({"vdpaType": "vhost"}))) == []
    assert ids(pools(snap, res({"acpiIndexes": ["7"]}))) == [host.pf_address(1)]


def test_accelerators_only_in_accelerator_pools(make_host):
    host, snap = make_host({"name": "acc", "classCode": "120000", "device": "0d90", "vfDevice": "0d90",
                            "numVfs": 2}, {"name": "eth0", "numVfs": 1})
    acc = {"resourceName": "fpga", "deviceType": "accelerator", "selectors": {"devices": ["0d90"]}}
    net = {"resourceName": "net", "selectors": {}}
    result = pools(snap, acc, net)
    assert result.as_ids() == {"intel.com/fpga": vfs(host, 0, 0, 1), "intel.com/net": vfs(host, 1, 0)}


def test_aux_net_devices_by_aux_type(make_host):
    host, _ = make_host({"name": "eth0", "numVfs": 0})
    for name in ("mlx5_core.sf.2", "mlx5_core.eth.0"):
        (host.root / "sys/devices/pci0000:00" / host.pf_address(0) / name / "net").mkdir(parents=True)
    from sriovkit.host.discover import discover
    from sriovkit.host.sysfs import Sysfs

    snap = discover(Sysfs(host.root))
    result = pools(snap, {"resourceName": "sf", "deviceType": "auxNetDevice",
                          "selectors": {"auxTypes": ["sf"], "pfNames": ["eth0"]}})
    assert result.as_ids() == {"intel.com/sf": ["mlx5_core.sf.2"]}


def test_empty_pools_are_listed_and_explained(two_vendors):
    host, snap = two_vendors
    result = pools(snap, res({"devices": ["ffff"]}))
    assert result.as_ids() == {"intel.com/r": []}
    reasons = {v.device_id: dict(v.rejections) for v in result.verdicts}
    assert reasons[host.vf_address(0, 0)]["intel.com/r"] == "devices: 1889 is not ffff"


def test_rejection_reasons_name_field_and_values(two_vendors):
    host, snap = two_vendors
    result = pools(snap, res([{"pfNames": ["eth0#0-1,3"]}, {"drivers": ["vfio-pci"], "isRdma": True}]))
    reason = {v.device_id: dict(v.rejections) for v in result.verdicts}[host.vf_address(0, 2)]["intel.com/r"]
    assert reason == ("selectors[0] pfNames: eth0#2 is not covered by eth0#0-1,3; "
                      "selectors[1] drivers: iavf is not vfio-pci")


def test_pools_are_deterministic_and_sorted(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 12})
    got = ids(pools(snap, res({})))
    assert got == sorted(got) and len(got) == 12


def test_pf_entries_match_as_upstream_matches_them(two_vendors):
    """Upstream's getItem: the PF's name compared case-insensitively, and the first entry naming
    the PF decides (a later one for the same PF never applies, which is warned about)."""
    host, snap = two_vendors
    assert ids(pools(snap, res({"pfNames": ["ETH0#1"]}))) == vfs(host, 0, 1)
    cfg = parse_config({"resourceList": [res({"pfNames": ["eth0#0", "Eth0#1-2", "ens2"]})]}, source="c.json")
    assert ids(build_pools(snap, cfg)) == vfs(host, 0, 0) + vfs(host, 1, 0, 1)
    assert cfg.warnings == ('c.json: resourceList[0].selectors.pfNames[1]: Eth0 is named by an earlier entry: never '
                            'applies: upstream uses the first entry for a PF only (value: "Eth0#1-2")',)
    root = host.pf_address(0).upper()
    assert ids(pools(snap, res({"rootDevices": [f"{root}#2"]}))) == vfs(host, 0, 2)
