"""The policy file: what it accepts, and one clear line per problem."""

from __future__ import annotations

import pytest

from sriovkit.provision.policy import DeviceType, PolicyError, load_policy, parse_policy

GOOD_YAML = """
allowDefaultRoutePf: false
policies:
  - name: dpdk
    resourceName: intel_dpdk
    nicSelector: {pfNames: ["ens1f0#0-1"], vendor: "0x8086", deviceID: "10C9"}
    numVfs: 4
    deviceType: vfio-pci
  - name: kernel
    nicSelector: {rootDevices: ["0000:3b:00.0"]}
    numVfs: 4
    mtu: 9000
"""


def problems(text: str, source: str = "policy.yaml") -> list[str]:
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, source)
    return exc.value.problems


def test_yaml_policy_parses_with_defaults(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_YAML)
    pol = load_policy(path)
    dpdk, kernel = pol.policies
    assert (dpdk.device_type, dpdk.num_vfs, dpdk.resource_name) == (DeviceType.VFIO_PCI, 4, "intel_dpdk")
    assert (dpdk.nic_selector.vendor, dpdk.nic_selector.device_id) == ("8086", "10c9")
    assert dpdk.vf_range("ens1f0") == frozenset({0, 1})
    assert dpdk.vf_range("ens1f1") is None
    assert (kernel.device_type, kernel.mtu) == (DeviceType.NETDEVICE, 9000)
    assert pol.allow_default_route_pf is False


def test_json_policy_parses():
    pol = parse_policy('{"policies": [{"name": "a", "nicSelector": {"pfNames": ["eth0"]}, "numVfs": 2}]}',
                       "p.json")
    assert pol.policies[0].num_vfs == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("policies:\n  - {name: a, nicSelector: {pfNames: [eth0]}, numVfs: -1}",
     "policy.yaml: policies[0].numVfs: must be at least 0 (value: -1)"),
    ("policies:\n  - {name: a, nicSelector: {pfNames: [eth0]}, numVfs: 2, deviceType: dpdk}",
     "policy.yaml: policies[0].deviceType: must be one of netdevice, vfio-pci (value: \"dpdk\")"),
    ("policies:\n  - {name: a, nicSelector: {pfNames: ['eth0#3-1']}, numVfs: 2}",
     "policy.yaml: policies[0].nicSelector.pfNames: 'eth0#3-1': VF range '3-1' ends before it starts "
     "(value: [\"eth0#3-1\"])"),
    ("policies:\n  - {name: a, nicSelector: {}, numVfs: 2}",
     "policy.yaml: policies[0].nicSelector: give at least one of pfNames, rootDevices, vendor, deviceID"),
    ("policies:\n  - {name: a, nicSelector: {vendor: intel}, numVfs: 2}",
     "policy.yaml: policies[0].nicSelector.vendor: must be 4 hex digits, got 'intel' (value: \"intel\")"),
    ("policies:\n  - {name: a, nicSelector: {pfNames: [eth0]}, numVfs: 2.0}",
     "policy.yaml: policies[0].numVfs: must be an integer of 64 bits (value: 2.0)"),
    ("policies:\n  - {name: a, nicSelector: {pfNames: [eth0]}, numVfs: true}",
     "policy.yaml: policies[0].numVfs: must be an integer of 64 bits (value: true)"),
    ("policies:\n  - {name: a, nicSelector: {pfNames: eth0}, numVfs: 2}",
     "policy.yaml: policies[0].nicSelector.pfNames: must be a list of strings (value: \"eth0\")"),
    ("policies:\n  - {name: a, nicSelector: {pfNames: [eth0]}, numVfs: 99999999999999999999}",
     "policy.yaml: policies[0].numVfs: must be an integer of 64 bits (value: 99999999999999999999)"),
    ("policies:\n  - {name: a, nicSelector: {pfNames: [eth0]}, numVfs: 5000}",
     "policy.yaml: policies[0].numVfs: must be at most 4096 (value: 5000)"),
    ("policies: " + "[" * 300 + "]" * 300, "policy.yaml: not valid YAML: nested more than the 256 levels accepted"),
    ("policies:\n  - {name: a, nicSelector: {pfNames: [eth0]}, numVfs: 2, mtu: 20}",
     "policy.yaml: policies[0].mtu: must be at least 68 (value: 20)"),
    ("- just a list", "policy.yaml: expected a mapping with a 'policies' list, got list"),
])
def test_each_problem_is_one_line_naming_file_field_and_value(text, expected):
    assert problems(text) == [expected]


def test_duplicate_names_and_several_problems_at_once():
    found = problems("policies:\n  - {name: a, nicSelector: {pfNames: [eth0]}, numVfs: 2}\n"
                     "  - {name: a, nicSelector: {pfNames: [eth1]}, numVfs: 2}\n")
    assert found == ["policy.yaml: policy name 'a' used twice"]
    assert len(problems("policies:\n  - {name: '', nicSelector: {}, numVfs: x}")) == 3


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(PolicyError) as exc:
        load_policy(tmp_path / "missing.yaml")
    assert exc.value.problems == [f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory"]
    [line] = problems("policies: [", "p.yaml")
    assert line.startswith("p.yaml: not valid YAML: ")
    [line] = problems("{", "p.json")
    assert line.startswith("p.json: not valid JSON: ")
