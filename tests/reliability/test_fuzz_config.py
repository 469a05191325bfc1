"""Hostile config.json: whatever the input, parsing answers with pools or with
ConfigError lines naming the file; it never raises anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sriovkit.host import sim
from sriovkit.host.discover import discover
from sriovkit.host.sysfs import Sysfs
from sriovkit.resources.config import ConfigError, parse_config, parse_config_text
from sriovkit.resources.pools import build_pools

SOURCE = "/etc/pcidp/config.json"
SELECTOR_KEYS = ["vendors", "devices", "drivers", "pciAddresses", "pfNames", "rootDevices", "linkTypes", "isRdma",
                 "needVhostNet", "ddpProfiles", "vdpaType", "pKeys", "acpiIndexes", "auxTypes", "bogus"]
RESOURCE_KEYS = ["resourceName", "resourcePrefix", "deviceType", "excludeTopology", "selectors", "additionalInfo",
                 "allocatePolicy", "extra"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
range_like = st.from_regex(r"\A[a-z0-9]{0,5}(#[0-9,\- ]{0,8})?\Z")
selector_values = st.one_of(json_values, st.lists(range_like, max_size=3),
                            st.lists(st.sampled_from(["8086", "15b3", "iavf", "vfio-pci", "eth0#0-1"]), max_size=3))
selectors = st.dictionaries(st.sampled_from(SELECTOR_KEYS), selector_values, max_size=5)
resources = st.dictionaries(
    st.sampled_from(RESOURCE_KEYS),
    st.one_of(json_values, selectors, st.lists(selectors, max_size=3), st.sampled_from(["a", "netDevice", "x.io"])),
    max_size=7,
)
configs = st.one_of(json_values, st.fixed_dictionaries({"resourceList": st.lists(resources, max_size=4)}))


def check_outcome(data, snapshot) -> None:
    try:
        parsed = parse_config(data, source=SOURCE)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must carry at least one problem"
        for line in exc.problems:
            assert line.startswith(f"{SOURCE}: ") and "\n" not in line
        return
    pools = build_pools(snapshot, parsed)
    for verdict in pools.verdicts:
        for _, reason in verdict.rejections:
            assert str(reason)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=configs)
def test_structured_garbage_never_escapes_as_a_traceback(data, fuzz_snapshot):
    check_outcome(data, fuzz_snapshot)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_is_invalid_json_or_a_config(text):
    try:
        parse_config_text(text, source=SOURCE)
    except ConfigError as exc:
        assert all(line.startswith(f"{SOURCE}: ") for line in exc.problems)


@settings(max_examples=200, deadline=None)
@given(data=configs)
def test_json_round_trip_is_stable(data):
    text = json.dumps(data)
    try:
        first = parse_config_text(text, source=SOURCE)
    except ConfigError as exc:
        second_problems = None
        try:
            parse_config_text(text, source=SOURCE)
        except ConfigError as again:
            second_problems = again.problems
        assert second_problems == exc.problems
        return
    assert parse_config_text(text, source=SOURCE) == first





@pytest.fixture(scope="module")
def fuzz_snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzhost") / "h"
    sim.create(root, {"pfs": [{"name": "eth0", "numVfs": 3, "vfDrivers": {"2": "vfio-pci"}},
                              {"name": "ib0", "linkType": "infiniband", "rdma": True, "numVfs": 1}]})
    return discover(Sysfs(root))
