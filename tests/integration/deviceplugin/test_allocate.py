"""Allocate over gRPC for each driver kind, device-info files, CDI, preferred allocation, refusals."""

from __future__ import annotations

import json

import grpc
import pytest

from sriovkit.host.discover import discover


def nodes(response):
    return {(d.container_path, d.host_path, d.permissions) for d in response.devices}


def test_netdevice_allocation_has_env_and_no_nodes(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    answer = node.kubelet.allocate("p", "c", {"intel.com/net": 2})["intel.com/net"]
    ids = sorted(answer.envs["PCIDEVICE_INTEL_COM_NET"].split(","))
    assert ids == [node.host.vf_address(0, 0), node.host.vf_address(0, 1)]
    info = json.loads(answer.envs["PCIDEVICE_INTEL_COM_NET_INFO"])
    assert info == {i: {"generic": {"deviceID": i}} for i in ids}
    assert list(answer.devices) == [] and list(answer.mounts) == []


def test_vfio_allocation(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/dpdk", 1)
    vf = discover(node.sysfs).get(node.host.vf_address(0, 2))
    group = f"/dev/vfio/{vf.iommu_group}"
    answer = node.kubelet.allocate("p", "c", {"intel.com/dpdk": 1})["intel.com/dpdk"]
    assert nodes(answer) == {("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"), (group, group, "rw")}
    assert answer.envs["PCIDEVICE_INTEL_COM_DPDK_INFO"] == (
        f'{{"{vf.pci_address}":{{"generic":{{"deviceID":"{vf.pci_address}"}},'
        f'"vfio":{{"dev-mount":"{group}","mount":"/dev/vfio/vfio"}}}}}}')


def test_uio_allocation(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/uio", 1)
    vf = discover(node.sysfs).get(node.host.vf_address(0, 3))
    path = f"/dev/{vf.uio_devices[0]}"
    answer = node.kubelet.allocate("p", "c", {"intel.com/uio": 1})["intel.com/uio"]
    assert nodes(answer) == {(path, path, "rw")}
    assert json.loads(answer.envs["PCIDEVICE_INTEL_COM_UIO_INFO"])[vf.pci_address]["uio"] == {"mount": path}


def test_rdma_allocation(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("nvidia.com/rdma", 2)
    answer = node.kubelet.allocate("p", "c", {"nvidia.com/rdma": 1})["nvidia.com/rdma"]
    [dev_id] = answer.envs["PCIDEVICE_NVIDIA_COM_RDMA"].split(",")
    vf = discover(node.sysfs).get(dev_id)
    expected = {f"/dev/infiniband/{n}" for n in vf.rdma_char_devices} | {"/dev/infiniband/rdma_cm"}
    assert {d.host_path for d in answer.devices} == expected
    info = json.loads(answer.envs["PCIDEVICE_NVIDIA_COM_RDMA_INFO"])[dev_id]
    assert info["rdma"]["rdma_dev"] == vf.rdma_devices[0]
    assert info["rdma"]["rdma_cm"] == "/dev/infiniband/rdma_cm"


def test_vhost_net_allocation(make_node):
    node = make_node(resources=[{"resourceName": "vhost", "selectors": {"drivers": ["iavf"], "needVhostNet": True}}])
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/vhost", 2)
    answer = node.kubelet.allocate("p", "c", {"intel.com/vhost": 2})["intel.com/vhost"]
    assert nodes(answer) == {("/dev/vhost-net", "/dev/vhost-net", "rw"), ("/dev/net/tun", "/dev/net/tun", "rw")}
    info = json.loads(answer.envs["PCIDEVICE_INTEL_COM_VHOST_INFO"])
    assert all(v["vhost"] == {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"} for v in info.values())
    for dev_id in info:
        doc = json.loads((node.devinfo_dir / f"intel.com-vhost-{dev_id}-device.json").read_text())
        assert doc["pci"]["vhost-net"] == "/dev/vhost-net"


def test_device_info_files_written_on_allocate_and_removed_when_pool_goes(node):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/dpdk", 1)
    vf = node.host.vf_address(0, 2)
    node.kubelet.allocate("p", "c", {"intel.com/dpdk": 1})
    path = node.devinfo_dir / f"intel.com-dpdk-{vf}-device.json"
    doc = json.loads(path.read_text())
    assert doc == {"type": "pci", "version": "1.1.0",
                   "pci": {"pci-address": vf, "pf-pci-address": node.host.pf_address(0)}}
    node.write_config([{"resourceName": "net", "selectors": {"drivers": ["iavf"]}}])
    assert node.kubelet.wait_for(lambda k: "intel.com/dpdk" not in manager.pools())
    assert not path.exists()


def test_device_info_file_removed_when_device_leaves_pool(node):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    answer = node.kubelet.allocate("p", "c", {"intel.com/net": 2})["intel.com/net"]

    def net_files() -> list[str]:
        return sorted(p.name for p in node.devinfo_dir.iterdir() if p.name.startswith("intel.com-net-"))

    # like upstream, every device of a pool has its file (written when the pool starts, or by Allocate)
    assert len(net_files()) == 2
    node.write_config([{"resourceName": "net", "selectors": {"pfNames": ["enp1s0f0#0"]}}])
    assert node.kubelet.wait_for(lambda k: len(manager.pools()["intel.com/net"].devices) == 1)
    assert node.kubelet.wait_for(lambda k: net_files() == [f"intel.com-net-{node.host.vf_address(0, 0)}-device.json"])
    assert answer.envs  # the running container keeps what it got


def test_answer_follows_the_pool_after_a_config_change(node):
    # Allocate answers are built once per device list: a pool changed in place (same resource,
    # new additionalInfo) must answer from the new config, asked for the same device again
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    vf = node.host.vf_address(0, 0)
    before = node.kubelet.allocate_ids("intel.com/net", [vf]).container_responses[0]
    assert json.loads(before.envs["PCIDEVICE_INTEL_COM_NET_INFO"]) == {vf: {"generic": {"deviceID": vf}}}
    node.write_config([{"resourceName": "net", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]},
                        "additionalInfo": {"*": {"k": "v"}}}])
    assert node.kubelet.wait_for(lambda k: manager.pools()["intel.com/net"].config.additional_info)
    after = node.kubelet.allocate_ids("intel.com/net", [vf]).container_responses[0]
    assert json.loads(after.envs["PCIDEVICE_INTEL_COM_NET_INFO"]) == {vf: {"extra": {"k": "v"},
                                                                          "generic": {"deviceID": vf}}}
    again = node.kubelet.allocate_ids("intel.com/net", [vf]).container_responses[0]
    assert again == after


def test_device_info_file_removed_behind_our_back_is_written_by_allocate(node):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    assert manager.device_info_prewritten()
    vf = node.host.vf_address(0, 1)
    path = node.devinfo_dir / f"intel.com-net-{vf}-device.json"
    node.kubelet.allocate_ids("intel.com/net", [vf])
    written = path.read_text()
    path.unlink()
    node.kubelet.allocate_ids("intel.com/net", [vf])
    assert path.read_text() == written


def test_cdi_mode(node):
    node.start_plugins(use_cdi=True)
    node.kubelet.wait_for_devices("intel.com/dpdk", 1)
    node.kubelet.wait_for_devices("intel.com/net", 2)
    vf = discover(node.sysfs).get(node.host.vf_address(0, 2))
    spec = json.loads((node.root / "cdi" / "sriovkit-intel.com-dpdk.json").read_text())
    assert spec["kind"] == "intel.com/dpdk"
    assert [d["name"] for d in spec["devices"]] == [vf.pci_address]
    got = node.kubelet.allocate("p", "c", {"intel.com/dpdk": 1, "intel.com/net": 1})
    dpdk, net = got["intel.com/dpdk"], got["intel.com/net"]
    assert list(dpdk.devices) == []
    assert [c.name for c in dpdk.cdi_devices] == [f"intel.com/dpdk={vf.pci_address}"]
    assert set(dpdk.annotations.values()) == {f"intel.com/dpdk={vf.pci_address}"}
    assert set(dpdk.annotations).isdisjoint(net.annotations)  # one key per pool: both pools reach the runtime
    assert dpdk.envs["PCIDEVICE_INTEL_COM_DPDK"] == vf.pci_address


def test_unknown_device_is_invalid_argument_naming_it(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    with pytest.raises(grpc.RpcError) as err:
        node.kubelet.allocate_ids("intel.com/net", [node.host.vf_address(0, 0), "0000:99:00.1"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "0000:99:00.1" in err.value.details()


def test_unhealthy_device_is_invalid_argument(node):
    from sriovkit.sim.host import set_operstate

    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    set_operstate(node.sysfs, "enp1s0f0", "down")
    assert node.kubelet.wait_for(lambda k: not any(s.healthy for s in k.resources()["intel.com/net"].values()))
    vf = node.host.vf_address(0, 0)
    with pytest.raises(grpc.RpcError) as err:
        node.kubelet.allocate_ids("intel.com/net", [vf])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert vf in err.value.details() and "unhealthy" in err.value.details()


PFS_FOR_POLICY = [
    {"name": "ens1", "numVfs": 4, "numaNode": 0},
    {"name": "ens2", "numVfs": 4, "numaNode": 0},
    {"name": "ens3", "numVfs": 4, "numaNode": 1},
]


@pytest.mark.parametrize("policy", ["packed", "spread"])
def test_preferred_allocation_through_the_kubelet(make_node, policy):
    node = make_node(PFS_FOR_POLICY, [{"resourceName": "vf", "allocatePolicy": policy, "selectors": {}}])
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/vf", 12)
    snap = discover(node.sysfs)
    node.kubelet.allocate("a", "c", {"intel.com/vf": 1})
    got = node.kubelet.allocate("b", "c", {"intel.com/vf": 3})["intel.com/vf"]
    ids = got.envs["PCIDEVICE_INTEL_COM_VF"].split(",")
    pfs = [snap.get(i).pf_address for i in ids]
    numas = {snap.get(i).numa_node for i in ids}
    assert len(numas) == 1
    if policy == "packed":
        assert len(set(pfs)) == 1  # 3 left on the PF the first pod used: that PF is filled first
    else:
        assert len(set(pfs)) == 2  # both PFs of the NUMA node that can hold the request
    held = {d for a in node.kubelet.assignments.values() for d in a.devices["intel.com/vf"]}
    assert len(held) == 4


def test_preferred_allocation_offers_devices_still_attached_last(make_node):
    """A deleted pod's VF is offered by the kubelet again before the pod's sandbox DEL came (the
    CNI's record still holds it): the device plugin prefers every other VF, so the new pod's ADD
    does not fail 'already attached' and wait for the kubelet's backoff."""
    node = make_node([{"name": "ens1", "numVfs": 3}], [{"resourceName": "vf", "selectors": {}}])
    snap = discover(node.sysfs)
    vfs = sorted(d.pci_address for d in snap if d.pf_address is not None)
    held = {vfs[0]}
    node.start_plugins(held_devices=lambda: held)
    node.kubelet.wait_for_devices("intel.com/vf", 3)
    got = node.kubelet.allocate("a", "c", {"intel.com/vf": 1})["intel.com/vf"]
    assert got.envs["PCIDEVICE_INTEL_COM_VF"] == vfs[1]  # not vfs[0], the lowest: still attached
    held.clear()
    got = node.kubelet.allocate("b", "c", {"intel.com/vf": 1})["intel.com/vf"]
    assert got.envs["PCIDEVICE_INTEL_COM_VF"] == vfs[0]  # released: preferred again
