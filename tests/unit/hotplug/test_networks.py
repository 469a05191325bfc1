"""The Multus networks annotation and interface naming."""

from __future__ import annotations

import pytest

from sriovkit.hotplug.networks import name_interfaces
from sriovkit.multus import NetworkAnnotationError, NetworkSelection, parse_networks


def parse(value: str) -> list[NetworkSelection]:
    return parse_networks(value, pod="ns1/vm", default_namespace="ns1")


def test_comma_list_with_namespaces_and_interfaces():
    got = parse("a, other/b ,c@eth9")
    assert [(s.namespace, s.name, s.interface) for s in got] == [
        ("ns1", "a", None), ("other", "b", None), ("ns1", "c", "eth9")]
    assert got[1].network == "other/b"


def test_json_list_with_every_field():
    got = parse('[{"name": "sriov", "namespace": "x", "interface": "vf1", "mac": "02:00:00:00:00:01",'
                ' "ips": ["10.1.1.5/24"], "default-route": ["10.1.1.1"], "cni-args": {"k": "v"}}, {"name": "b"}]')
    assert got[0] == NetworkSelection("x", "sriov", "vf1", "02:00:00:00:00:01", ("10.1.1.5/24",), ("10.1.1.1",))
    assert got[0].cni_args == {"k": "v"}
    assert (got[1].namespace, got[1].interface) == ("ns1", None)


def test_empty_annotation_is_no_network():
    assert parse("") == [] and parse("  ") == [] and parse("[]") == []


@pytest.mark.parametrize(("value", "words"), [
    ("[{", "invalid JSON"),
    ('{"name": "a"}', "is not a valid object name"),  # not a list: read as names, as Multus does
    ('["a"]', "[0]: must be an object"),
    ('[{"name": 5}]', "[0].name: must be a string"),
    ('[{"name": "a", "ips": "10.0.0.1"}]', "[0].ips: must be a list of strings"),
    ('[{"name": "a", "cni-args": []}]', "[0].cni-args: must be an object"),
    ("[" * 1000 + "]" * 1000, "nested 1000 levels deep"),
    ('[{"name": "a", "mac": NaN}]', "NaN"),
    ("[null]", "null"),
    ("a,,b", "empty item"),
    ("Bad_Name", "network name 'Bad_Name'"),
    ("a@has/slash", "interface 'has/slash'"),
    ("a@waytoolonginterface", "interface 'waytoolonginterface'"),
    ("NS/a", "namespace 'NS'"),
])
def test_errors_name_pod_annotation_and_value(value, words):
    with pytest.raises(NetworkAnnotationError) as info:
        parse(value)
    message = str(info.value)
    assert message.startswith("pod ns1/vm: annotation k8s.v1.cni.cncf.io/networks: ")
    assert words in message
    assert "\n" not in message


def test_interfaces_named_by_position_like_multus():
    desired = name_interfaces(parse("a,b@eth5,c"), pod="ns1/vm")
    assert [(d.network, d.interface) for d in desired] == [("ns1/a", "net1"), ("ns1/b", "eth5"), ("ns1/c", "net3")]


def test_explicit_name_wins_over_a_position_name():
    desired = name_interfaces(parse("a,b@net1"), pod="ns1/vm")
    assert [d.interface for d in desired] == ["net2", "net1"]


def test_kept_names_do_not_shift_when_an_earlier_network_goes():
    desired = name_interfaces(parse("b,c"), pod="ns1/vm", keep={"ns1/b": "net2", "ns1/c": "net3"})
    assert [d.interface for d in desired] == ["net2", "net3"]
    # a new network takes its position's name if free, else the next free one
    desired = name_interfaces(parse("b,c,d"), pod="ns1/vm", keep={"ns1/b": "net2", "ns1/c": "net3"})
    assert [d.interface for d in desired] == ["net2", "net3", "net4"]
    desired = name_interfaces(parse("d,b"), pod="ns1/vm", keep={"ns1/b": "net1"})
    assert [d.interface for d in desired] == ["net2", "net1"]


def test_one_interface_twice_is_an_error():
    with pytest.raises(NetworkAnnotationError, match="interface 'eth1' requested twice"):
        name_interfaces(parse("a@eth1,b@eth1"), pod="ns1/vm")


def test_json_selections_are_read_as_multus_reads_them():
    """Multus decodes the annotation with Go's encoding/json: keys folded, unknown fields ignored."""
    [got] = parse('[{"Name": "a", "NAMESPACE": "ns2", "Interface": "net7", "colour": 1, "name": "b"}]')
    assert (got.namespace, got.name, got.interface) == ("ns2", "b", "net7")
    [old] = parse('[{"name": "a", "interfaceRequest": "net3"}]')  # Multus' pre-3.2 spelling
    assert old.interface == "net3"
