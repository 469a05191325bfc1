"""ResourceSlices: one pool per PF, one device per VF, dra-driver-sriov's names and attribute types."""

from __future__ import annotations

import pytest

from sriovkit.dra.inventory import dra_devices, pcie_root, served_by
from sriovkit.dra.slices import build_slices, device_name, pool_name
from sriovkit.host.sysfs import Sysfs
from sriovkit.resources.config import ServedBy, parse_config
from sriovkit.resources.pools import build_pools

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
INTEL = {"name": "enp1s0f0", "numVfs": 2}
MLX = {"name": "enp1s0f1", "vendor": "15b3", "device": "1017", "vfDevice": "1018", "driver": "mlx5_core",
       "vfDriver": "mlx5_core", "rdma": True, "numaNode": 1, "numVfs": 1}


def config(*entries):
    return parse_config({"resourceList": list(entries)})


def inventory(make_host, resources, node="node-a"):
    host, snap = make_host(INTEL, MLX)
    pools = build_pools(snap, resources).by_name()
    dra = served_by(pools, ServedBy.DRA)
    return host, pools, dra_devices(node, snap, dra.values(), {}, Sysfs(host.root))


@pytest.mark.parametrize(("address", "name"), [("0000:3b:02.4", "0000-3b-02-4"), ("0001:af:1f.7", "0001-af-1f-7")])
def test_device_name_is_the_pci_address_with_dashes(address, name):
    assert device_name(address) == name


def test_one_pool_per_pf_one_device_per_vf_with_upstream_attributes(make_host):
    resources = config({"resourceName": "vfs", "servedBy": "dra", "selectors": {}})
    host, _, devices = inventory(make_host, resources)
    slices = build_slices("node-a", DRIVER, [d.facts for d in devices.values()], {})
    assert [s["spec"]["pool"]["name"] for s in slices] == ["node-a/0000-10-00-0", "node-a/0000-12-00-0"]
    assert all(s["spec"]["nodeName"] == "node-a" and s["spec"]["driver"] == DRIVER for s in slices)
    assert all(s["apiVersion"] == "resource.k8s.io/v1" and s["spec"]["pool"]["resourceSliceCount"] == 1
               for s in slices)
    assert [d["name"] for d in slices[0]["spec"]["devices"]] == ["0000-11-00-0", "0000-11-00-1"]
    mlx = slices[1]["spec"]["devices"][0]["attributes"]
    assert mlx == {
        f"{DRIVER}/vendor": {"string": "15b3"},
        f"{DRIVER}/deviceID": {"string": "1018"},
        f"{DRIVER}/pfDeviceID": {"string": "1017"},
        f"{DRIVER}/pciAddress": {"string": "0000:13:00.0"},
        f"{DRIVER}/PFName": {"string": "enp1s0f1"},
        f"{DRIVER}/EswitchMode": {"string": "legacy"},
        f"{DRIVER}/vfID": {"int": 0},
        f"{DRIVER}/pfPciAddress": {"string": "0000:12:00.0"},
        f"{DRIVER}/linkType": {"string": "ethernet"},
        f"{DRIVER}/rdmaCapable": {"bool": True},
        "k8s.cni.cncf.io/deviceID": {"string": "0000:13:00.0"},
        "k8s.cni.cncf.io/resourceName": {"string": "intel.com/vfs"},
        "resource.kubernetes.io/pciBusID": {"string": "0000:13:00.0"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
        "dra.net/numaNode": {"int": 1},
    }
    intel = slices[0]["spec"]["devices"][1]["attributes"]
    assert intel[f"{DRIVER}/vfID"] == {"int": 1}
    assert intel[f"{DRIVER}/rdmaCapable"] == {"bool": False}
    assert intel["dra.net/numaNode"] == {"int": 0}


def test_driver_name_sets_the_attribute_prefix(make_host):
    resources = config({"resourceName": "vfs", "servedBy": "dra"})
    _, _, devices = inventory(make_host, resources)
    slices = build_slices("n", "vf.example.com", [d.facts for d in devices.values()], {})
    attrs = slices[0]["spec"]["devices"][0]["attributes"]
    assert "vf.example.com/PFName" in attrs and not any(k.startswith(DRIVER) for k in attrs)
    assert slices[0]["spec"]["driver"] == "vf.example.com"


def test_unhealthy_vf_is_withdrawn_or_tainted(make_host):
    resources = config({"resourceName": "vfs", "servedBy": "dra"})
    _, _, devices = inventory(make_host, resources)
    facts = [d.facts for d in devices.values()]
    health = {"0000:11:00.0": False}
    withdrawn = build_slices("n", DRIVER, facts, health)
    assert [d["name"] for d in withdrawn[0]["spec"]["devices"]] == ["0000-11-00-1"]
    tainted = build_slices("n", DRIVER, facts, health, taint_unhealthy=True)
    first, second = tainted[0]["spec"]["devices"]
    assert first["taints"] == [{"key": f"{DRIVER}/unhealthy", "value": "PFLinkDown", "effect": "NoSchedule"}]
    assert "taints" not in second


def test_generation_per_pool_and_stable_names(make_host):
    resources = config({"resourceName": "vfs", "servedBy": "dra"})
    _, _, devices = inventory(make_host, resources)
    facts = [d.facts for d in devices.values()]
    slices = build_slices("n", DRIVER, facts, {}, generations={pool_name("n", "0000:10:00.0"): 7})
    assert [s["spec"]["pool"]["generation"] for s in slices] == [7, 1]
    assert [s["metadata"]["name"] for s in slices] == [s["metadata"]["name"] for s in build_slices(
        "n", DRIVER, facts, {})]
    long = build_slices("n" * 250, DRIVER, facts, {})
    assert all(len(s["metadata"]["name"]) <= 253 for s in long)
    assert len({s["metadata"]["name"] for s in long}) == 2


def test_pcie_root_from_the_sysfs_path(make_host):
    host, snap = make_host(INTEL)
    assert pcie_root(Sysfs(host.root), "0000:11:00.0") == "pci0000:00"
    assert pcie_root(Sysfs(host.root), "0000:99:00.0") == ""
