"""Allocate payloads per driver family, env names, INFO JSON, CDI and device-info documents."""

from __future__ import annotations

import json

import pytest

from sriovkit.deviceplugin.payload import (
    DeviceNode,
    HostDevNodes,
    cdi_annotation_key,
    cdi_spec,
    container_allocation,
    device_info,
    device_info_file_name,
    device_payload,
    env_name,
    info_json,
)
from sriovkit.resources.config import parse_config
from sriovkit.resources.pools import build_pools

HOST = HostDevNodes(vhost_net=True, rdma_cm=True)


def pool_of(snapshot, resource):
    cfg = parse_config({"resourceList": [resource]})
    return build_pools(snapshot, cfg).pools[0]


def payloads(pool, host=HOST):
    return [device_payload(d, pool.config, host) for d in pool.devices]


@pytest.fixture
def mixed(make_host):
    return make_host(
        {"name": "eth0", "numVfs": 4, "vfDrivers": {"1": "vfio-pci", "2": "igb_uio"}},
        {"name": "ens2", "vendor": "15b3", "device": "1017", "vfDevice": "1018", "driver": "mlx5_core",
         "vfDriver": "mlx5_core", "numaNode": 1, "numVfs": 2, "rdma": True},
    )


def test_netdevice_has_no_device_nodes_and_generic_info(mixed):
    host, snap = mixed
    vf = host.vf_address(0, 0)
    pool = pool_of(snap, {"resourceName": "net", "selectors": {"pfNames": ["eth0#0"]}})
    [p] = payloads(pool)
    assert p.nodes == ()
    assert p.info == {"generic": {"deviceID": vf}}


def test_vfio_device_gets_container_and_group_nodes(mixed):
    host, snap = mixed
    vf = snap.get(host.vf_address(0, 1))
    pool = pool_of(snap, {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}})
    [p] = payloads(pool)
    group = f"/dev/vfio/{vf.iommu_group}"
    assert p.nodes == (DeviceNode("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"), DeviceNode(group, group, "rw"))
    assert p.info["vfio"] == {"mount": "/dev/vfio/vfio", "dev-mount": group}


def test_uio_device_gets_its_uio_node(mixed):
    host, snap = mixed
    vf = snap.get(host.vf_address(0, 2))
    pool = pool_of(snap, {"resourceName": "uio", "selectors": {"drivers": ["igb_uio"]}})
    [p] = payloads(pool)
    path = f"/dev/{vf.uio_devices[0]}"
    assert p.nodes == (DeviceNode(path, path, "rw"),)
    assert p.info["uio"] == {"mount": path}


def test_rdma_nodes_only_when_the_selector_asks_for_rdma(mixed):
    host, snap = mixed
    vf = snap.get(host.vf_address(1, 0))
    with_rdma = pool_of(snap, {"resourceName": "rdma", "selectors": {"vendors": ["15b3"], "isRdma": True}})
    p = payloads(with_rdma)[0]
    paths = [n.container_path for n in p.nodes]
    assert paths == [f"/dev/infiniband/{n}" for n in vf.rdma_char_devices] + ["/dev/infiniband/rdma_cm"]
    rdma = p.info["rdma"]
    assert rdma["rdma_dev"] == vf.rdma_devices[0]
    assert rdma["rdma_cm"] == "/dev/infiniband/rdma_cm"
    assert {rdma["uverbs"], rdma["umad"], rdma["issm"]} == {f"/dev/infiniband/{n}" for n in vf.rdma_char_devices}
    plain = pool_of(snap, {"resourceName": "mlx", "selectors": {"vendors": ["15b3"]}})
    assert payloads(plain)[0].nodes == ()
    assert "rdma" not in payloads(plain)[0].info


def test_rdma_cm_left_out_when_the_host_has_none(mixed):
    host, snap = mixed
    pool = pool_of(snap, {"resourceName": "rdma", "selectors": {"vendors": ["15b3"], "isRdma": True}})
    p = payloads(pool, HostDevNodes(rdma_cm=False))[0]
    assert "/dev/infiniband/rdma_cm" not in [n.host_path for n in p.nodes]
    assert "rdma_cm" not in p.info["rdma"]


def test_vhost_net_adds_vhost_and_tun(mixed):
    host, snap = mixed
    pool = pool_of(snap, {"resourceName": "vh", "selectors": {"pfNames": ["eth0#0"], "needVhostNet": True}})
    [p] = payloads(pool)
    assert [n.host_path for n in p.nodes] == ["/dev/vhost-net", "/dev/net/tun"]
    assert p.info["vhost"] == {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"}


def test_selector_flags_come_from_the_selector_that_took_the_device(mixed):
    host, snap = mixed
    pool = pool_of(snap, {"resourceName": "r", "selectors": [
        {"drivers": ["iavf"]}, {"vendors": ["15b3"], "isRdma": True}]})
    by_id = {p.device_id: p for p in payloads(pool)}
    assert "rdma" not in by_id[host.vf_address(0, 0)].info
    assert "rdma" in by_id[host.vf_address(1, 0)].info


def test_extra_info_merges_star_then_device(mixed):
    host, snap = mixed
    vf0, vf1 = host.vf_address(1, 0), host.vf_address(1, 1)
    pool = pool_of(snap, {"resourceName": "mlx", "selectors": {"vendors": ["15b3"]},
                          "additionalInfo": {"*": {"a": "all", "b": "all"}, vf1: {"b": "mine"}}})
    info = {p.device_id: p.info for p in payloads(pool)}
    assert info[vf0]["extra"] == {"a": "all", "b": "all"}
    assert info[vf1]["extra"] == {"a": "all", "b": "mine"}


def test_env_names_mangle_like_upstream(mixed):
    _, snap = mixed
    pool = pool_of(snap, {"resourceName": "sriov_net", "resourcePrefix": "my-vendor.example.com",
                          "selectors": {"drivers": ["iavf"]}})
    assert env_name(pool.config) == "PCIDEVICE_MY-VENDOR_EXAMPLE_COM_SRIOV_NET"


def test_container_allocation_envs_and_info_json_exact(mixed):
    host, snap = mixed
    vf = snap.get(host.vf_address(0, 1))
    pool = pool_of(snap, {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}})
    answer = container_allocation(pool.config, payloads(pool))
    group = f"/dev/vfio/{vf.iommu_group}"
    assert answer.envs["PCIDEVICE_INTEL_COM_DPDK"] == vf.pci_address
    assert answer.envs["PCIDEVICE_INTEL_COM_DPDK_INFO"] == (
        f'{{"{vf.pci_address}":{{"generic":{{"deviceID":"{vf.pci_address}"}},'
        f'"vfio":{{"dev-mount":"{group}","mount":"/dev/vfio/vfio"}}}}}}')
    assert answer.annotations == {} and answer.cdi_devices == ()


def test_shared_nodes_appear_once_per_container(mixed):
    host, snap = mixed
    pool = pool_of(snap, {"resourceName": "vh", "selectors": {"vendors": ["8086"], "needVhostNet": True}})
    answer = container_allocation(pool.config, payloads(pool))
    hosts = [n.host_path for n in answer.devices]
    assert len(hosts) == len(set(hosts))
    assert hosts.count("/dev/vhost-net") == 1 and "/dev/vfio/vfio" in hosts
    assert answer.envs["PCIDEVICE_INTEL_COM_VH"] == ",".join(host.vf_address(0, i) for i in range(4))


def test_info_json_escapes_like_go():
    from sriovkit.deviceplugin.payload import DevicePayload

    text = info_json([DevicePayload("x", (), {"extra": {"k": "<a&b>"}})])
    assert text == '{"x":{"extra":{"k":"\\u003ca\\u0026b\\u003e"}}}'
    assert json.loads(text) == {"x": {"extra": {"k": "<a&b>"}}}


def test_cdi_mode_names_devices_and_annotates_per_pool(mixed):
    host, snap = mixed
    dpdk = pool_of(snap, {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}})
    net = pool_of(snap, {"resourceName": "net", "selectors": {"pfNames": ["eth0#0"]}})
    a = container_allocation(dpdk.config, payloads(dpdk), use_cdi=True)
    b = container_allocation(net.config, payloads(net), use_cdi=True)
    assert a.devices == ()
    assert a.cdi_devices == (f"intel.com/dpdk={host.vf_address(0, 1)}",)
    assert a.annotations == {cdi_annotation_key(dpdk.config): a.cdi_devices[0]}
    assert cdi_annotation_key(dpdk.config) != cdi_annotation_key(net.config)
    assert a.envs["PCIDEVICE_INTEL_COM_DPDK"] == host.vf_address(0, 1)
    assert b.cdi_devices == (f"intel.com/net={host.vf_address(0, 0)}",)


def test_cdi_spec_lists_each_device_with_its_nodes(mixed):
    host, snap = mixed
    vf = snap.get(host.vf_address(0, 1))
    dpdk = pool_of(snap, {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}})
    spec = cdi_spec(dpdk.config, payloads(dpdk))
    assert spec["kind"] == "intel.com/dpdk"
    [dev] = spec["devices"]
    assert dev["name"] == vf.pci_address
    assert {n["path"] for n in dev["containerEdits"]["deviceNodes"]} == {"/dev/vfio/vfio",
                                                                         f"/dev/vfio/{vf.iommu_group}"}


def test_device_info_document_and_file_name(mixed):
    host, snap = mixed
    vf = snap.get(host.vf_address(1, 0))
    pool = pool_of(snap, {"resourceName": "mlx", "selectors": {"vendors": ["15b3"]}})
    doc = device_info(vf)
    assert doc == {"type": "pci", "version": "1.1.0", "pci": {
        "pci-address": vf.pci_address, "pf-pci-address": host.pf_address(1), "rdma-device": vf.rdma_devices[0]}}
    assert device_info_file_name(pool.config, vf.pci_address) == f"intel.com-mlx-{vf.pci_address}-device.json"
