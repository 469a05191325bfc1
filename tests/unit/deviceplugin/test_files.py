"""Device-info and CDI files: names, atomic writes, removal that spares other resources."""

from __future__ import annotations

import json

from sriovkit.deviceplugin import files
from sriovkit.resources.config import parse_config


def configs(*names, prefix="intel.com"):
    cfg = parse_config({"resourceList": [{"resourceName": n, "resourcePrefix": prefix} for n in names]})
    return cfg.resources


def test_write_then_remove_keeps_other_resources_and_kept_devices(make_host, tmp_path):
    host, snap = make_host({"name": "eth0", "numVfs": 3})
    tmp_path = tmp_path / "devinfo"
    net, net_x = configs("net", "net_x")
    vfs = [snap.get(host.vf_address(0, i)) for i in range(3)]
    files.write_device_info(tmp_path, net, [(v, None) for v in vfs])
    files.write_device_info(tmp_path, net_x, [(vfs[0], None)])
    doc = json.loads((tmp_path / f"intel.com-net-{vfs[0].pci_address}-device.json").read_text())
    assert doc["pci"]["pci-address"] == vfs[0].pci_address
    removed = files.remove_device_info(tmp_path, net, keep=[vfs[1].pci_address])
    assert sorted(removed) == sorted([vfs[0].pci_address, vfs[2].pci_address])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        f"intel.com-net-{vfs[1].pci_address}-device.json",
        f"intel.com-net_x-{vfs[0].pci_address}-device.json",
    ])
    assert files.remove_device_info(tmp_path / "missing", net) == []


def test_cdi_spec_written_atomically_and_removed(tmp_path):
    [net] = configs("net")
    files.write_cdi_spec(tmp_path / "cdi", net, [])
    path = files.cdi_spec_path(tmp_path / "cdi", net)
    assert json.loads(path.read_text())["kind"] == "intel.com/net"
    assert [p.name for p in (tmp_path / "cdi").iterdir()] == [path.name]  # no temporary left behind
    files.remove_cdi_spec(tmp_path / "cdi", net)
    files.remove_cdi_spec(tmp_path / "cdi", net)
    assert list((tmp_path / "cdi").iterdir()) == []


def test_device_info_rewritten_only_when_it_would_change(make_host, tmp_path):
    from sriovkit.deviceplugin.payload import DevicePayload

    host, snap = make_host({"name": "eth0", "numVfs": 1})
    [net] = configs("net")
    vf = snap.get(host.vf_address(0, 0))
    path = tmp_path / f"intel.com-net-{vf.pci_address}-device.json"
    files.write_device_info(tmp_path, net, [(vf, None)])
    first = path.stat().st_ino
    files.write_device_info(tmp_path, net, [(vf, None)])
    assert path.stat().st_ino == first  # same content: left alone
    vhost = DevicePayload(vf.pci_address, (), {"vhost": {"net-mount": "/dev/vhost-net"}})
    files.write_device_info(tmp_path, net, [(vf, vhost)])
    assert json.loads(path.read_text())["pci"]["vhost-net"] == "/dev/vhost-net"
