"""Hostile config.json: whatever the input, parsing answers with pools or with
ConfigError lines naming the file; it never raises anything else. Inputs are text, random JSON
values, and documents shaped like config.json (tests/reliability/jsonfuzz.py) with mistakes at
every level: case-varied and duplicate keys, wrong JSON types, huge and non-finite numbers,
deep nesting, bytes that are not UTF-8."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sriovkit.host.discover import discover
from sriovkit.host.sysfs import Sysfs
from sriovkit.resources.config import ConfigError, parse_config, parse_config_text
from sriovkit.resources.pools import build_pools
from sriovkit.sim import host as sim
from tests.reliability import jsonfuzz as jf

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





_STRINGS = st.lists(st.sampled_from(["8086", "15b3", "154c", "iavf", "vfio-pci", "0000:11:00.1", "eth0", "eth0#0-1",
                                      "ib0", "0000:10:00.0#1", "ether", "infiniband", "sf", "101", "0x8001"]),
                    max_size=3)
SELECTOR_SCHEMA: jf.Schema = {
    key: _STRINGS for key in ("vendors", "devices", "drivers", "pciAddresses", "pfNames", "rootDevices", "linkTypes",
                              "ddpProfiles", "pKeys", "acpiIndexes", "auxTypes")
} | {"isRdma": st.booleans(), "needVhostNet": st.booleans(), "vdpaType": st.sampled_from(["vhost", "virtio", ""])}
RESOURCE_SCHEMA: jf.Schema = {
    "resourceName": st.sampled_from(["a", "b-c", "net_1", "x"]),
    "resourcePrefix": st.sampled_from(["intel.com", "example.org", ""]),
    "deviceType": st.sampled_from(["netDevice", "accelerator", "auxNetDevice", ""]),
    "excludeTopology": st.booleans(),
    "allocatePolicy": st.sampled_from(["packed", "spread"]),
    "selectors": SELECTOR_SCHEMA,
    "additionalInfo": st.dictionaries(st.sampled_from(["*", "0000:11:00.0"]),
                                      st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
                                      max_size=2).map(lambda d: jf.Obj((k, jf.Obj(v.items())) for k, v in d.items())),
}
CONFIG_SCHEMA: jf.Schema = {"resourceList": [RESOURCE_SCHEMA]}
shaped_configs = jf.document(CONFIG_SCHEMA)


def check_lines(lines, kind):
    for line in lines:
        assert line.startswith(f"{SOURCE}: "), f"{kind} does not name the file: {line!r}"
        assert "\n" not in line and "Traceback" not in line, f"{kind} is not one line: {line!r}"


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=jf.hostile_bytes(shaped_configs), strict=st.booleans())
def test_shaped_hostile_bytes_answer_pools_or_one_line_per_problem(raw, strict, fuzz_snapshot):
    try:
        parsed = parse_config_text(raw, source=SOURCE, strict=strict)
    except ConfigError as exc:
        assert exc.problems
        check_lines(exc.problems, "a problem")
        return
    check_lines(parsed.warnings, "a warning")
    assert not (strict and parsed.warnings), "strict mode turns every warning into a problem"
    build_pools(fuzz_snapshot, parsed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_case_varied_copy_gives_the_same_pools(data, fuzz_snapshot):
    """Issue 16: upstream matches keys as Go does, so respelling every key changes nothing."""
    doc = data.draw(jf.document(CONFIG_SCHEMA, mistakes=False))
    varied = jf.case_varied(doc, CONFIG_SCHEMA, data.draw)
    try:
        original = parse_config_text(jf.emit(doc), source=SOURCE)
    except ConfigError as exc:
        with pytest.raises(ConfigError) as again:
            parse_config_text(jf.emit(varied), source=SOURCE)
        assert len(again.value.problems) == len(exc.problems)
        return
    copy = parse_config_text(jf.emit(varied), source=SOURCE)
    assert copy == original
    assert build_pools(fuzz_snapshot, copy).as_ids() == build_pools(fuzz_snapshot, original).as_ids()


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_last_of_a_duplicated_key_wins(data):
    doc = data.draw(jf.document(CONFIG_SCHEMA, mistakes=False))
    name = data.draw(st.sampled_from(["first", "second"]))
    resource = jf.Obj([("resourceName", "first"), (data.draw(jf.spelling("resourceName")), "second")])
    if name == "first":
        resource.reverse()
    doc = jf.Obj([("resourceList", [resource])])
    [parsed] = parse_config_text(jf.emit(doc), source=SOURCE).resources
    assert parsed.resource_name == name


@pytest.fixture(scope="module")
def fuzz_snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzhost") / "h"
    sim.create(root, {"pfs": [{"name": "eth0", "numVfs": 3, "vfDrivers": {"2": "vfio-pci"}},
                              {"name": "ib0", "linkType": "infiniband", "rdma": True, "numVfs": 1}]})
    return discover(Sysfs(root))
