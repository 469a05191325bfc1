"""Discovery on simulated hosts: what the kernel's sysfs layout tells us."""

from __future__ import annotations

import os

import pytest

from sriovkit.host.discover import DeviceNotFoundError, discover, discover_device
from sriovkit.host.sysfs import Sysfs
from sriovkit.sim import host as sim


def test_pf_and_vfs_are_related_both_ways(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 3, "totalVfs": 8})
    pf = snap.get(host.pf_address(0))
    assert pf is not None and pf.is_sriov_pf and not pf.is_vf
    assert (pf.total_vfs, pf.num_vfs) == (8, 3)
    assert pf.netdevs == ("eth0",)
    assert pf.vf_addresses == tuple(host.vf_address(0, i) for i in range(3))
    vfs = snap.virtual_functions(pf)
    assert [v.vf_index for v in vfs] == [0, 1, 2]
    assert all(v.pf_address == pf.pci_address and v.pf_netdev == "eth0" for v in vfs)
    assert [v.netdev for v in vfs] == ["eth0v0", "eth0v1", "eth0v2"]


def test_ids_driver_numa_and_iommu_come_from_sysfs(make_host):
    host, snap = make_host({"name": "ens1", "vendor": "15B3", "device": "1017", "vfDevice": "1018",
                            "driver": "mlx5_core", "vfDriver": "mlx5_core", "numaNode": 1, "numVfs": 1})
    vf = snap.get(host.vf_address(0, 0))
    assert (vf.vendor, vf.device, vf.driver, vf.numa_node) == ("15b3", "1018", "mlx5_core", 1)
    assert vf.class_code == "020000" and vf.is_network
    assert vf.iommu_group is not None


def test_numa_minus_one_means_unknown(make_host):
    _, snap = make_host({"name": "eth0", "numaNode": -1, "numVfs": 1})
    assert all(d.numa_node is None for d in snap)


def test_vfio_bound_vf_has_group_device_and_pf_link_type(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 2, "vfDrivers": {"1": "vfio-pci"}})
    vf = snap.get(host.vf_address(0, 1))
    assert vf.uses_vfio and vf.netdevs == ()
    assert vf.vfio_group_device == f"/dev/vfio/{vf.iommu_group}"
    assert os.path.exists(Sysfs(host.root).dev_path(vf.vfio_group_device))
    assert vf.link_type == "ether"  # from the PF: the VF has no netdev
    assert snap.get(host.vf_address(0, 0)).vfio_group_device is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the simulator makes char devices only with CAP_MKNOD")
def test_simulated_device_nodes_are_char_devices_a_container_runtime_accepts(make_host):
    """containerd takes a CDI or device-plugin node's type and numbers from the host file: the
    simulator's are char devices with /dev/null's numbers, also the ones a later bind makes
    (linked to the one made at create: the agent that binds has no CAP_MKNOD)."""
    import stat

    host, snap = make_host({"name": "eth0", "numVfs": 2, "vfDrivers": {"1": "vfio-pci"}})
    sysfs = Sysfs(host.root)
    host.bind_driver(host.vf_address(0, 0), "vfio-pci")
    groups = [discover_device(sysfs, host.vf_address(0, i)).vfio_group_device for i in range(2)]
    for path in ["/dev/vfio/vfio", "/dev/vhost-net", "/dev/net/tun", *groups]:
        st = os.stat(sysfs.dev_path(path))
        assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3), path
    host.bind_driver(host.vf_address(0, 0), "iavf")
    assert not os.path.exists(sysfs.dev_path(groups[0]))


def test_uio_bound_vf_lists_its_uio_device(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 2, "vfDrivers": {"0-1": "igb_uio"}})
    uios = [snap.get(host.vf_address(0, i)).uio_devices for i in range(2)]
    assert uios == [("uio0",), ("uio1",)]
    assert snap.get(host.vf_address(0, 0)).uses_uio


def test_rdma_and_infiniband(make_host):
    host, snap = make_host({"name": "ib0", "linkType": "infiniband", "rdma": True, "numVfs": 1,
                            "pkeys": ["0x8001", "0xFFFF"]})
    vf = snap.get(host.vf_address(0, 0))
    assert vf.link_type == "infiniband" and vf.class_code == "020700"
    assert vf.is_rdma and vf.rdma_devices == ("mlx5_1",)
    assert set(vf.rdma_char_devices) == {"uverbs1", "umad1", "issm1"}
    assert vf.pkeys == ("0x8001", "0xffff")


def test_acpi_index_and_vdpa(make_host):
    host, snap = make_host({"name": "eth0", "acpiIndex": 3, "numVfs": 1, "vdpa": "vhost"})
    assert snap.get(host.pf_address(0)).acpi_index == "3"
    assert snap.get(host.vf_address(0, 0)).vdpa_type == "vhost"


def test_vhost_net_presence(make_host):
    assert make_host({"name": "eth0"})[1].vhost_net
    assert not make_host({"name": "eth0"}, vhost_net=False)[1].vhost_net


def test_several_pfs_each_with_their_vfs(make_host):
    host, snap = make_host({"name": "p0", "numVfs": 2}, {"name": "p1", "numVfs": 3}, {"name": "p2", "numVfs": 0})
    pfs = snap.physical_functions()
    assert [p.netdev for p in pfs] == ["p0", "p1", "p2"]
    assert [len(snap.virtual_functions(p)) for p in pfs] == [2, 3, 0]
    assert len(snap.devices) == 8


def test_vf_count_change_is_seen(make_host, tmp_path):
    host, _ = make_host({"name": "eth0", "numVfs": 4})
    host.set_num_vfs(0, 2)
    snap = discover(Sysfs(host.root))
    assert snap.get(host.pf_address(0)).num_vfs == 2
    assert len(snap.virtual_functions(snap.get(host.pf_address(0)))) == 2
    assert snap.get(host.vf_address(0, 3)) is None


def test_rebinding_a_vf_changes_driver_and_netdev(make_host):
    host, _ = make_host({"name": "eth0", "numVfs": 1})
    address = host.vf_address(0, 0)
    host.set_netdev(address, None)
    host.bind_driver(address, "vfio-pci")
    vf = discover(Sysfs(host.root)).get(address)
    assert vf.driver == "vfio-pci" and vf.netdevs == () and vf.vfio_group_device is not None


def test_discover_device_matches_full_discovery(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 3, "vfDrivers": {"2": "vfio-pci"}})
    for dev in snap:
        assert discover_device(Sysfs(host.root), dev.pci_address) == dev


@pytest.mark.parametrize("offset, stride", [(None, None), ("0", "0"), ("7", "1"), ("255", "2"), ("junk", "1")],
                         ids=["absent", "zero-stride", "wrong-offset", "wrong-stride", "unreadable"])
def test_vf_index_when_the_pf_misstates_its_vf_numbering(make_host, offset, stride):
    """The index comes from the routing ID only when the PF's virtfn link at that index confirms
    it; otherwise the links themselves say it, as before."""
    host, snap = make_host({"name": "eth0", "numVfs": 12, "totalVfs": 16})
    pf_dir = host.root / "sys" / "bus" / "pci" / "devices" / host.pf_address(0)
    for name, value in (("sriov_offset", offset), ("sriov_stride", stride)):
        (pf_dir / name).unlink()
        if value is not None:
            (pf_dir / name).write_text(value)
    for i in (0, 5, 11):
        assert discover_device(Sysfs(host.root), host.vf_address(0, i)).vf_index == i
    assert discover_device(Sysfs(host.root), host.vf_address(0, 11)) == snap.get(host.vf_address(0, 11))


def test_discover_device_unknown_address(make_host):
    host, _ = make_host({"name": "eth0"})
    with pytest.raises(DeviceNotFoundError, match="0000:99:00.0"):
        discover_device(Sysfs(host.root), "0000:99:00.0")


def test_non_network_devices_are_skipped(make_host):
    host, _ = make_host({"name": "eth0", "numVfs": 0})
    gpu = host.root / "sys/devices/pci0000:00/0000:05:00.0"
    gpu.mkdir()
    (gpu / "uevent").write_text("PCI_CLASS=30000\nPCI_ID=10DE:1234\n")
    os.symlink("../../../devices/pci0000:00/0000:05:00.0", host.root / "sys/bus/pci/devices/0000:05:00.0")
    assert discover(Sysfs(host.root)).get("0000:05:00.0") is None


def test_ids_fall_back_to_attribute_files_without_uevent(make_host):
    host, snap = make_host({"name": "eth0", "numVfs": 1})
    address = host.vf_address(0, 0)
    (host.root / "sys/devices/pci0000:00" / address / "uevent").unlink()
    assert discover(Sysfs(host.root)).get(address) == snap.get(address)


def test_accelerator_class(make_host):
    host, snap = make_host({"name": "acc0", "classCode": "120000", "vendor": "8086", "device": "0d90",
                            "numVfs": 1})
    assert all(d.is_accelerator and not d.is_network for d in snap)


def test_aux_devices_under_a_pf(make_host):
    host, _ = make_host({"name": "eth0", "numVfs": 0})
    sf = host.root / "sys/devices/pci0000:00" / host.pf_address(0) / "mlx5_core.sf.2"
    (sf / "net" / "enp1s0f0s2").mkdir(parents=True)
    (sf / "net" / "enp1s0f0s2" / "type").write_text("1\n")
    aux = discover(Sysfs(host.root)).aux_devices["mlx5_core.sf.2"]
    assert (aux.aux_type, aux.parent_address, aux.netdev, aux.pf_netdev, aux.link_type) == (
        "sf", host.pf_address(0), "enp1s0f0s2", "eth0", "ether")


def test_sim_refuses_to_delete_foreign_directories(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "file").write_text("x")
    with pytest.raises(sim.SimSpecError, match="refusing"):
        sim.destroy(tmp_path / "precious")
    with pytest.raises(sim.SimSpecError, match="refusing"):
        sim.create(tmp_path / "precious", {"pfs": []})
    assert (tmp_path / "precious" / "file").exists()


def test_sim_reopen_and_destroy(tmp_path):
    host = sim.create(tmp_path / "h", {"pfs": [{"name": "eth0", "numVfs": 2}]})
    again = sim.open_existing(tmp_path / "h")
    assert [d.pci_address for d in again.devices()] == [d.pci_address for d in host.devices()]
    sim.destroy(tmp_path / "h")
    assert not (tmp_path / "h").exists()
