"""NAD configs, network-status entries, the reconcile plan and the backoff schedule."""

from __future__ import annotations

import json

import pytest

from sriovkit.devinfo import pci_device_info
from sriovkit.hotplug.cniexec import CniCall, network_config, plugin_configs
from sriovkit.hotplug.nad import NetworkDefinitionError, parse_nad
from sriovkit.hotplug.networks import name_interfaces
from sriovkit.hotplug.plan import Backoff, Verb, plan
from sriovkit.hotplug.status import (
    read_network_status,
    reconciled_status,
    secondary_attachments,
    status_entry,
)
from sriovkit.multus import parse_networks


def nad(config: object, resource: str | None = None, name: str = "net-a") -> dict:
    meta: dict = {"namespace": "ns1", "name": name}
    if resource:
        meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": resource}
    return {"metadata": meta, "spec": {"config": config if isinstance(config, str) else json.dumps(config)}}


def test_single_plugin_config_becomes_a_one_plugin_list():
    d = parse_nad(nad({"cniVersion": "1.0.0", "name": "sriov-net", "type": "sriov", "vlan": 5}, "intel.com/vf"))
    assert (d.network, d.cni_version, d.network_name, d.resource_name) == ("ns1/net-a", "1.0.0", "sriov-net",
                                                                          "intel.com/vf")
    assert d.plugins == ({"type": "sriov", "vlan": 5},) and not d.is_list


def test_conflist_keeps_its_plugins_and_defaults():
    d = parse_nad(nad({"plugins": [{"type": "bridge"}, {"type": "tuning"}]}))
    assert d.is_list and [p["type"] for p in d.plugins] == ["bridge", "tuning"]
    assert (d.cni_version, d.network_name, d.resource_name) == ("0.3.1", "net-a", None)


@pytest.mark.parametrize(("config", "words"), [
    ("", "spec.config is empty"),
    ("{", "not JSON"),
    ("[1]", "must be a JSON object"),
    ({"name": "x"}, "neither 'type' nor 'plugins'"),
    ({"plugins": []}, "non-empty list"),
    ({"plugins": [{"vlan": 1}]}, "plugins[0] needs a string 'type'"),
    ({"type": "../../bin/sh"}, "not a plain binary name"),
    ('{"type": "sriov", "x": ' + "[" * 1000 + "]" * 1000 + "}", "nested 1001 levels deep"),
    ('{"type": "sriov", "vlan": NaN}', "NaN"),
    ('{"type": "sriov", "x": 1e400}', "float64"),
])
def test_bad_nads_name_the_nad_and_field(config, words):
    with pytest.raises(NetworkDefinitionError) as info:
        parse_nad(nad(config))
    assert str(info.value).startswith("NetworkAttachmentDefinition ns1/net-a: ")
    assert words in str(info.value)


def test_delegated_config_gets_device_id_and_capability_values():
    plugins = ({"type": "sriov", "capabilities": {"mac": True}}, {"type": "tuning"})
    conf = network_config(plugins, cni_version="1.0.0", name="n", device_id="0000:01:00.2",
                          runtime_config={"mac": "02:00:00:00:00:09", "ips": ["10.0.0.2/24"]})
    assert conf["plugins"][0] == {"type": "sriov", "capabilities": {"mac": True}, "deviceID": "0000:01:00.2",
                                  "runtimeConfig": {"mac": "02:00:00:00:00:09"}}
    assert conf["plugins"][1] == {"type": "tuning", "deviceID": "0000:01:00.2"}
    assert [c["name"] for c in plugin_configs(conf)] == ["n", "n"]
    assert plugins[0] == {"type": "sriov", "capabilities": {"mac": True}}  # the NAD's own dict untouched


def test_selection_cni_args_go_to_args_cni():
    plugins = ({"type": "bridge", "args": {"cni": {"a": 1}, "other": True}},)
    conf = network_config(plugins, cni_version="1.0.0", name="n", device_id=None, runtime_config={},
                          cni_args={"b": "2"})
    assert conf["plugins"][0]["args"] == {"cni": {"a": 1, "b": "2"}, "other": True}
    assert "deviceID" not in conf["plugins"][0]


def test_cni_args_carry_the_pod():
    call = CniCall("abc", "/var/run/netns/x", "net1", "ns1", "vm", "u-1")
    assert call.cni_args() == ("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=vm;"
                               "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1")


RESULT = {"cniVersion": "1.0.0",
          "interfaces": [{"name": "br0", "mac": "aa:aa:aa:aa:aa:aa"},
                         {"name": "net1", "mac": "02:11:22:33:44:55", "sandbox": "/var/run/netns/x"}],
          "ips": [{"address": "10.1.1.7/24", "interface": 1}, {"address": "10.9.9.9/24", "interface": 0}],
          "dns": {"nameservers": ["10.0.0.10"]}}


def test_status_entry_like_multus():
    entry = status_entry("ns1/net-a", "net1", RESULT, device_info=pci_device_info("0000:01:00.2"))
    assert entry == {"name": "ns1/net-a", "interface": "net1", "ips": ["10.1.1.7"], "mac": "02:11:22:33:44:55",
                     "dns": {"nameservers": ["10.0.0.10"]},
                     "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:01:00.2"}}}


def test_status_updates_keep_the_default_network_and_replace_by_interface():
    entries = [{"name": "cbr0", "interface": "eth0", "default": True}, {"name": "ns1/a", "interface": "net1"},
               {"name": "ns1/b", "interface": "net2"}]
    assert secondary_attachments(entries) == {"net1": "ns1/a", "net2": "ns1/b"}
    # net1 was attached by someone else and is still there; net2 is ours now
    new = reconciled_status(entries, ours=[{"name": "ns1/c", "interface": "net2"}], others={"net1", "net2"})
    assert new == [{"name": "cbr0", "interface": "eth0", "default": True}, {"name": "ns1/a", "interface": "net1"},
                   {"name": "ns1/c", "interface": "net2"}]
    # others gone (removed, or not in the netns any more) drop out
    assert reconciled_status(entries, ours=[], others=set()) == [entries[0]]


def test_unreadable_network_status_reads_as_empty():
    assert read_network_status({"k8s.v1.cni.cncf.io/network-status": "{"}) == []
    assert read_network_status({"k8s.v1.cni.cncf.io/network-status": '{"a": 1}'}) == []
    assert read_network_status({"k8s.v1.cni.cncf.io/network-status": "[" * 5000 + "]" * 5000}) == []
    assert read_network_status(None) == []


def desired(value: str):
    return name_interfaces(parse_networks(value, pod="ns1/vm", default_namespace="ns1"), pod="ns1/vm")


def test_plan_adds_missing_in_annotation_order():
    assert [str(a) for a in plan(desired("a,b@x"), {})] == ["ADD ns1/a@net1", "ADD ns1/b@x"]


def test_plan_removes_newest_first_before_adding():
    actions = plan(desired("a"), {"net1": "ns1/a", "net2": "ns1/b", "net3": "ns1/c"})
    assert [str(a) for a in actions] == ["DEL ns1/c@net3", "DEL ns1/b@net2"]


def test_plan_replaces_an_interface_that_now_names_another_network():
    actions = plan(desired("b@net1"), {"net1": "ns1/a"})
    assert [(a.verb, a.network) for a in actions] == [(Verb.DEL, "ns1/a"), (Verb.ADD, "ns1/b")]


def test_plan_is_empty_when_converged():
    assert plan(desired("a,b"), {"net1": "ns1/a", "net2": "ns1/b"}) == []


def test_backoff_doubles_up_to_the_maximum():
    assert Backoff(initial=0.5, factor=2, maximum=5).schedule(6) == [0.5, 1, 2, 4, 5, 5]
    assert Backoff().delay(0) == 0 and Backoff().delay(10_000) == 300


def test_devices_in_network_status_are_the_pci_addresses_of_its_entries() -> None:
    from sriovkit.hotplug.status import pci_devices_in_status

    entries = [{"name": "cluster", "interface": "eth0", "default": True},
               {"name": "ns/a", "interface": "net1",
                "device-info": {"type": "pci", "pci": {"pci-address": "0000:11:00.0"}}},
               {"name": "ns/b", "interface": "net2", "device-info": {"type": "pci", "pci": "garbage"}},
               {"name": "ns/c", "interface": "net3", "device-info": "garbage"}]
    assert pci_devices_in_status(entries) == ["0000:11:00.0"]
