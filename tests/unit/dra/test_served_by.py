"""servedBy: each resource through the device plugin (default), DRA or not at all; a VF in one only."""

from __future__ import annotations

import pytest

from sriovkit.dra.inventory import dra_devices, served_by
from sriovkit.host.sysfs import Sysfs
from sriovkit.resources.config import ConfigError, ServedBy, parse_config, to_config_json
from sriovkit.resources.pools import build_pools


def test_default_is_the_device_plugin_and_round_trips():
    resources = parse_config({"resourceList": [{"resourceName": "a"}, {"resourceName": "b", "servedBy": "dra"},
                                               {"resourceName": "c", "servedBy": "none"}]})
    assert [r.served_by for r in resources.resources] == [ServedBy.DEVICE_PLUGIN, ServedBy.DRA, ServedBy.NONE]
    again = parse_config(to_config_json(resources))
    assert again == resources
    assert "servedBy" not in to_config_json(resources)["resourceList"][0]


@pytest.mark.parametrize("value", ["DRA", "kubelet"])
def test_bad_served_by_is_one_line_naming_field_and_value(value):
    with pytest.raises(ConfigError) as exc:
        parse_config({"resourceList": [{"resourceName": "a", "servedBy": value}]}, source="c.json")
    assert exc.value.problems == [
        f'c.json: resourceList[0].servedBy: must be one of devicePlugin, dra, none (value: {_json(value)})']


def test_served_by_decodes_as_every_string_field():
    """null and "" are a Go string's unset (the default), another JSON type is refused."""
    for unset in (None, ""):
        [r] = parse_config({"resourceList": [{"resourceName": "a", "servedBy": unset}]}).resources
        assert r.served_by is ServedBy.DEVICE_PLUGIN
    with pytest.raises(ConfigError) as exc:
        parse_config({"resourceList": [{"resourceName": "a", "servedBy": 1}]}, source="c.json")
    assert exc.value.problems == ["c.json: resourceList[0].servedBy: must be a string (value: 1)"]
    [r] = parse_config({"resourceList": [{"resourceName": "a", "ServedBy": "dra"}]}).resources
    assert r.served_by is ServedBy.DRA


def _json(value):
    import json
    return json.dumps(value)


def test_dp_and_dra_pools_never_share_a_vf(make_host):
    host, snap = make_host({"name": "enp1s0f0", "numVfs": 4}, {"name": "enp1s0f1", "numVfs": 2})
    resources = parse_config({"resourceList": [
        {"resourceName": "dp", "selectors": {"pfNames": ["enp1s0f0#0-1"]}},
        {"resourceName": "held", "servedBy": "none", "selectors": {"pfNames": ["enp1s0f0#2"]}},
        # selects everything: gets only what the earlier resources left
        {"resourceName": "dra", "servedBy": "dra"},
    ]})
    pools = build_pools(snap, resources).by_name()
    dp = served_by(pools, ServedBy.DEVICE_PLUGIN)
    dra = dra_devices("n", snap, served_by(pools, ServedBy.DRA).values(), {}, Sysfs(host.root))
    dp_ids = {i for p in dp.values() for i in p.device_ids}
    dra_ids = {d.facts.pci_address for d in dra.values()}
    held = set(pools["intel.com/held"].device_ids)
    assert dp_ids == {"0000:11:00.0", "0000:11:00.1"}
    assert held == {"0000:11:00.2"}
    assert dra_ids == {"0000:11:00.3", "0000:13:00.0", "0000:13:00.1"}
    assert not (dp_ids & dra_ids) and not (held & dra_ids)
    assert list(dp) == ["intel.com/dp"]


def test_a_pinned_device_stays_in_its_pool_and_joins_no_other(make_host):
    host, snap = make_host({"name": "enp1s0f0", "numVfs": 3, "vfDrivers": {"0": "vfio-pci"}})
    resources = parse_config({"resourceList": [
        {"resourceName": "dra", "servedBy": "dra", "selectors": {"drivers": ["iavf"]}},
        {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}},
    ]})
    plain = build_pools(snap, resources).as_ids()
    assert plain == {"intel.com/dra": ["0000:11:00.1", "0000:11:00.2"], "intel.com/dpdk": ["0000:11:00.0"]}
    # 11:00.0 was prepared for a DRA claim of intel.com/dra (and rebound): it stays there
    pinned = build_pools(snap, resources, pinned={"0000:11:00.0": "intel.com/dra"})
    assert pinned.as_ids() == {"intel.com/dra": ["0000:11:00.0", "0000:11:00.1", "0000:11:00.2"],
                               "intel.com/dpdk": []}
    (verdict,) = [v for v in pinned.verdicts if v.device_id == "0000:11:00.0"]
    assert verdict.pool == "intel.com/dra"
    # pinned to a resource no longer configured: in no pool at all
    gone = build_pools(snap, resources, pinned={"0000:11:00.0": "intel.com/removed"})
    assert gone.as_ids()["intel.com/dpdk"] == []
    (verdict,) = [v for v in gone.verdicts if v.device_id == "0000:11:00.0"]
    assert verdict.pool is None and "held by a prepared DRA claim of intel.com/removed" in str(verdict.rejections[0][1])
