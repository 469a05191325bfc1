"""config.json validation: every problem reported at once, one line each, naming file, path and value."""

from __future__ import annotations

import json

import pytest

from sriovkit.resources.config import (
    AllocatePolicy,
    ConfigError,
    DeviceType,
    IndexedName,
    load_config_file,
    parse_config,
    parse_config_text,
)
from sriovkit.resources.ranges import RangeError, parse_indexed_names, parse_ranges


def problems_of(data, source="cfg.json", strict=True):
    with pytest.raises(ConfigError) as exc:
        parse_config(data, source=source, strict=strict)
    return exc.value.problems


def test_upstream_example_parses_with_defaults():
    cfg = parse_config({"resourceList": [
        {"resourceName": "intel_sriov_netdevice",
         "selectors": {"vendors": ["8086"], "devices": ["154c", "10ed"], "drivers": ["i40evf", "iavf"]}},
        {"resourceName": "mlnx_sriov_rdma", "resourcePrefix": "mellanox.com", "excludeTopology": True,
         "selectors": [{"vendors": ["15b3"], "isRdma": True}, {"pfNames": ["ib0#0-3,7"]}],
         "additionalInfo": {"*": {"token": "abc"}}},
        {"resourceName": "fpga", "deviceType": "accelerator", "allocatePolicy": "spread",
         "selectors": {"vendors": ["8086"], "devices": ["0d90"]}},
    ]})
    first, second, third = cfg.resources
    assert first.full_name == "intel.com/intel_sriov_netdevice"
    assert first.device_type is DeviceType.NET_DEVICE and first.allocate_policy is AllocatePolicy.PACKED
    assert first.selectors[0].devices == ("154c", "10ed")
    assert second.full_name == "mellanox.com/mlnx_sriov_rdma" and second.exclude_topology
    assert second.selectors[1].pf_names == (IndexedName("ib0", frozenset({0, 1, 2, 3, 7})),)
    assert second.additional_info == {"*": {"token": "abc"}}
    assert third.device_type is DeviceType.ACCELERATOR and third.allocate_policy is AllocatePolicy.SPREAD


def test_default_prefix_is_a_parameter():
    cfg = parse_config({"resourceList": [{"resourceName": "a"}]}, default_prefix="example.org")
    assert cfg.resources[0].full_name == "example.org/a"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "cfg.json: must be a JSON object with a resourceList (value: [])"),
        ({}, "cfg.json: resourceList: no resources (value: null)"),
        ({"resourceList": {}}, "cfg.json: resourceList: must be a list (value: {})"),
        ({"resourceList": [{"resourceName": "a"}], "extra": 1}, "cfg.json: extra: unknown field (value: 1)"),
        ({"resourceList": [5]}, "cfg.json: resourceList[0]: must be an object (value: 5)"),
        ({"resourceList": [{}]},
         "cfg.json: resourceList[0].resourceName: required; letters, digits, '_' and '-' only (value: null)"),
        ({"resourceList": [{"resourceName": "a.b"}]},
         "cfg.json: resourceList[0].resourceName: required; letters, digits, '_' and '-' only (value: \"a.b\")"),
        ({"resourceList": [{"resourceName": "a", "resourcePrefix": "Bad_Prefix"}]},
         "cfg.json: resourceList[0].resourcePrefix: must be a DNS subdomain such as intel.com "
         "(value: \"Bad_Prefix\")"),
        ({"resourceList": [{"resourceName": "a", "deviceType": "gpu"}]},
         "cfg.json: resourceList[0].deviceType: must be one of netDevice, accelerator, auxNetDevice "
         "(value: \"gpu\")"),
        ({"resourceList": [{"resourceName": "a", "allocatePolicy": "random"}]},
         "cfg.json: resourceList[0].allocatePolicy: must be one of packed, spread (value: \"random\")"),
        ({"resourceList": [{"resourceName": "a", "excludeTopology": "yes"}]},
         "cfg.json: resourceList[0].excludeTopology: must be true or false (value: \"yes\")"),
        ({"resourceList": [{"resourceName": "a", "excludeTopology": 1}]},
         "cfg.json: resourceList[0].excludeTopology: must be true or false (value: 1)"),
        ({"resourceList": [{"resourceName": 5}]},
         "cfg.json: resourceList[0].resourceName: must be a string (value: 5)"),
        ({"resourceList": [{"resourceName": "a", "bogus": 1}]},
         "cfg.json: resourceList[0].bogus: unknown field (value: 1)"),
        ({"resourceList": [{"resourceName": "a", "selectors": []}]},
         "cfg.json: resourceList[0].selectors: must be an object or a non-empty list of objects (value: [])"),
        ({"resourceList": [{"resourceName": "a", "selectors": [3]}]},
         "cfg.json: resourceList[0].selectors[0]: must be an object (value: 3)"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"vendors": "8086"}}]},
         "cfg.json: resourceList[0].selectors.vendors: must be a list of strings (value: \"8086\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"vendors": ["80861"]}}]},
         "cfg.json: resourceList[0].selectors.vendors[0]: must be 4 hex digits (value: \"80861\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"devices": ["zz"]}}]},
         "cfg.json: resourceList[0].selectors.devices[0]: must be 4 hex digits (value: \"zz\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"pciAddresses": ["3b:02.4"]}}]},
         "cfg.json: resourceList[0].selectors.pciAddresses[0]: must be a PCI address like 0000:3b:02.4 "
         "(value: \"3b:02.4\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"pfNames": ["eth0#5-2"]}}]},
         "cfg.json: resourceList[0].selectors.pfNames[0]: VF range '5-2' ends before it starts "
         "(value: \"eth0#5-2\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"pfNames": ["eth0#"]}}]},
         "cfg.json: resourceList[0].selectors.pfNames[0]: empty VF range after '#' (value: \"eth0#\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"pfNames": ["#1"]}}]},
         "cfg.json: resourceList[0].selectors.pfNames[0]: has no name before '#' (value: \"#1\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"rootDevices": ["eth0#1"]}}]},
         "cfg.json: resourceList[0].selectors.rootDevices[0]: must be a PCI address like 0000:3b:00.0, "
         "optionally with #ranges (value: \"eth0#1\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"isRdma": "true"}}]},
         "cfg.json: resourceList[0].selectors.isRdma: must be true or false (value: \"true\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"vdpaType": "fast"}}]},
         "cfg.json: resourceList[0].selectors.vdpaType: must be one of vduse, vhost, virtio (value: \"fast\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"pKeys": ["0x1ffff"]}}]},
         "cfg.json: resourceList[0].selectors.pKeys[0]: must be a hex partition key like 0x8001 "
         "(value: \"0x1ffff\")"),
        ({"resourceList": [{"resourceName": "a", "selectors": {"colour": ["red"]}}]},
         "cfg.json: resourceList[0].selectors.colour: unknown selector (value: [\"red\"])"),
        ({"resourceList": [{"resourceName": "a", "deviceType": "accelerator", "selectors": {"pfNames": ["x"]}}]},
         "cfg.json: resourceList[0].selectors.pfNames: not a selector of deviceType accelerator "
         "(value: [\"x\"])"),
        ({"resourceList": [{"resourceName": "a", "additionalInfo": []}]},
         "cfg.json: resourceList[0].additionalInfo: must be an object (value: [])"),
        ({"resourceList": [{"resourceName": "a", "additionalInfo": {"eth0": {}}}]},
         "cfg.json: resourceList[0].additionalInfo.eth0: key must be a PCI address or '*' (value: \"eth0\")"),
        ({"resourceList": [{"resourceName": "a", "additionalInfo": {"*": {"n": 1}}}]},
         "cfg.json: resourceList[0].additionalInfo.*.n: must be a string (value: 1)"),
        ({"resourceList": [{"resourceName": "a"}, {"resourceName": "a"}]},
         "cfg.json: resourceList[1].resourceName: duplicate resource intel.com/a (also resourceList[0]) "
         "(value: \"a\")"),
    ],
)
def test_each_problem_is_one_line_naming_file_path_and_value(data, expected):
    assert problems_of(data) == [expected]


def test_all_problems_are_reported_at_once():
    found = problems_of({"resourceList": [
        {"resourceName": "ok", "selectors": {"vendors": ["x"], "drivers": [1]}},
        {"resourceName": "bad name"},
    ], "other": True})
    # the first resource's selectors do not decode (drivers [1]): upstream skips the resource, so
    # its vendors are never looked at; the strict check reports the rest at once
    assert found == [
        "cfg.json: other: unknown field (value: true)",
        "cfg.json: resourceList[0].selectors.drivers[0]: must be a string (value: 1)",
        "cfg.json: resourceList[1].resourceName: required; letters, digits, '_' and '-' only (value: \"bad name\")",
    ]


def test_same_name_with_different_prefixes_is_allowed():
    cfg = parse_config({"resourceList": [{"resourceName": "a"}, {"resourceName": "a", "resourcePrefix": "x.io"}]})
    assert [r.full_name for r in cfg.resources] == ["intel.com/a", "x.io/a"]


def test_invalid_json_names_file_and_position():
    with pytest.raises(ConfigError) as exc:
        parse_config_text('{"resourceList": [}', source="/etc/pcidp/config.json")
    assert exc.value.problems == ["/etc/pcidp/config.json: invalid JSON at line 1 column 19: Expecting value"]


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config_file(tmp_path / "missing.json")
    assert exc.value.problems == [f"{tmp_path / 'missing.json'}: cannot read: No such file or directory"]


def test_file_round_trip(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"resourceList": [{"resourceName": "x", "selectors": {"drivers": ["iavf"]}}]}))
    cfg = load_config_file(path)
    assert cfg.source == str(path) and cfg.resources[0].selectors[0].drivers == ("iavf",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", {0}), ("3,1", {1, 3}), ("0-3", {0, 1, 2, 3}), ("5-5", {5}), ("1,3,5-9,23", {1, 3, 5, 6, 7, 8, 9, 23}),
        (" 2 - 4 , 7", {2, 3, 4, 7}), ("0-0,0", {0}),
    ],
)
def test_ranges(text, expected):
    assert parse_ranges(text) == frozenset(expected)


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "5-2", "1,,2", "1-2-3", "4096", "1.5"])
def test_bad_ranges(text):
    with pytest.raises(RangeError):
        parse_ranges(text)


def test_indexed_names_split_on_first_hash():
    assert parse_indexed_names("eth0") == ("eth0", None)
    assert parse_indexed_names("eth0#2") == ("eth0", frozenset({2}))
    assert parse_indexed_names("0000:3b:00.0#0-1") == ("0000:3b:00.0", frozenset({0, 1}))


def test_a_resource_list_written_back_as_json_reads_back_the_same() -> None:
    from sriovkit.resources.config import to_config_json

    data = {"resourceList": [
        {"resourceName": "net", "resourcePrefix": "example.org", "excludeTopology": True,
         "allocatePolicy": "spread", "additionalInfo": {"*": {"k": "v"}},
         "selectors": [{"vendors": ["8086"], "devices": ["154c"], "drivers": ["iavf"],
                        "pciAddresses": ["0000:3b:02.4"], "pfNames": ["eth0#0-3,7", "eth1"],
                        "rootDevices": ["0000:3b:00.0#1"], "linkTypes": ["ether"], "isRdma": True,
                        "needVhostNet": True, "ddpProfiles": ["gtp"], "pKeys": ["0x8001"],
                        "acpiIndexes": ["101"]},
                       {"drivers": ["vfio-pci"], "vdpaType": "vhost"}]},
        {"resourceName": "sf", "deviceType": "auxNetDevice", "selectors": {"auxTypes": ["sf"]}},
        {"resourceName": "qat", "deviceType": "accelerator", "selectors": {"vendors": ["8086"]}},
    ]}
    first = parse_config(data)
    written = to_config_json(first)
    assert parse_config(json.loads(json.dumps(written))) == first
    assert written["resourceList"][0]["selectors"][0]["pfNames"] == ["eth0#0-3,7", "eth1"]


@pytest.mark.parametrize("names", [
    ["et\nh0#1-2", "et\nh0#3"],          # a name from the input quoted in the message itself
    ["eth0\u2028#1", "eth0\u2028#2"],    # a line separator a terminal may break on
    ["e\x1b[2Jth0#1", "e\x1b[2Jth0#2"],  # an escape sequence
])
def test_a_problem_quoting_input_stays_one_line(names):
    lines = problems_of({"resourceList": [{"resourceName": "a", "selectors": {"pfNames": names}}]},
                        source="c\nfg.json")
    assert lines, "the repeated pfNames name is a problem in strict mode"
    for line in lines:
        assert line.isprintable(), f"not one printable line: {line!r}"
        assert line.startswith("c\\nfg.json: resourceList[0].selectors.pfNames[1]: ")
    assert any("is named by an earlier entry" in line for line in lines)
