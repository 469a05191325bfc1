"""Kubelet restart, own-socket deletion, config reload, VF removal, PF link down/up."""

from __future__ import annotations

import logging
import os

from sriovkit.sim.host import set_operstate


def registrations(kubelet, resource):
    return sum(1 for r in kubelet.registrations if r.resource == resource)


def test_kubelet_restart_makes_every_plugin_register_again(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    before = registrations(node.kubelet, "intel.com/net")
    node.kubelet.restart()  # sockets wiped, new kubelet.sock
    assert node.kubelet.wait_for(lambda k: registrations(k, "intel.com/net") > before
                                 and registrations(k, "nvidia.com/rdma") > before)
    assert len(node.kubelet.wait_for_devices("intel.com/net", 2)) == 2
    assert (node.dp_dir / "intel.com_net.sock").is_socket()


def test_kubelet_restart_keeping_plugin_sockets_still_reregisters(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/dpdk", 1)
    before = registrations(node.kubelet, "intel.com/dpdk")
    node.kubelet.restart(wipe_sockets=False)
    assert node.kubelet.wait_for(lambda k: registrations(k, "intel.com/dpdk") > before)
    node.kubelet.wait_for_devices("intel.com/dpdk", 1)


def test_own_socket_removed_is_served_again_and_registered(node):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/uio", 1)
    before = registrations(node.kubelet, "intel.com/uio")
    other_before = registrations(node.kubelet, "intel.com/net")
    os.unlink(node.dp_dir / "intel.com_uio.sock")
    assert node.kubelet.wait_for(lambda k: registrations(k, "intel.com/uio") > before)
    assert (node.dp_dir / "intel.com_uio.sock").is_socket()
    node.kubelet.wait_for_devices("intel.com/uio", 1)
    answer = node.kubelet.allocate("p", "c", {"intel.com/uio": 1})
    assert answer["intel.com/uio"].envs["PCIDEVICE_INTEL_COM_UIO"] == node.host.vf_address(0, 3)
    assert registrations(node.kubelet, "intel.com/net") == other_before
    assert set(manager.servers) == {"intel.com/net", "intel.com/dpdk", "intel.com/uio", "nvidia.com/rdma"}


def test_config_reload_touches_only_changed_pools(node):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("nvidia.com/rdma", 2)
    untouched = manager.servers["nvidia.com/rdma"]
    rdma_regs = registrations(node.kubelet, "nvidia.com/rdma")
    node.write_config([
        {"resourceName": "net", "selectors": {"pfNames": ["enp1s0f0#0"]}},  # shrinks
        {"resourceName": "rdma", "resourcePrefix": "nvidia.com", "selectors": {"vendors": ["15b3"], "isRdma": True}},
        {"resourceName": "new", "selectors": {"drivers": ["vfio-pci", "igb_uio"]}},  # added; dpdk, uio removed
    ])
    assert node.kubelet.wait_for(lambda k: set(manager.servers) == {"intel.com/net", "nvidia.com/rdma",
                                                                    "intel.com/new"})
    assert node.kubelet.wait_for(lambda k: len(k.resources().get("intel.com/net", {})) == 1)
    assert set(node.kubelet.wait_for_devices("intel.com/new", 2)) == {node.host.vf_address(0, 2),
                                                                      node.host.vf_address(0, 3)}
    assert manager.servers["nvidia.com/rdma"] is untouched
    assert registrations(node.kubelet, "nvidia.com/rdma") == rdma_regs
    assert not (node.dp_dir / "intel.com_dpdk.sock").exists()


def test_invalid_config_keeps_running_one_and_logs_one_error(node, caplog):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    caplog.set_level(logging.ERROR, logger="sriovkit.deviceplugin.manager")
    # a config upstream rejects too (an unknown selector is only a warning, as upstream ignores it)
    node.write_config('{"resourceList": [{"resourceName": "n!t", "selectors": {"vendors": ["8086"]}}]}')
    assert node.kubelet.wait_for(lambda k: any("config reload failed" in r.message for r in caplog.records))
    node.kubelet.wait_for(lambda k: False, timeout=0.3)  # several more polls: still one line
    errors = [r for r in caplog.records if "config reload failed" in r.message]
    assert len(errors) == 1
    assert "resourceName" in errors[0].getMessage() and str(node.config) in errors[0].getMessage()
    assert set(manager.servers) == {"intel.com/net", "intel.com/dpdk", "intel.com/uio", "nvidia.com/rdma"}
    assert len(node.kubelet.resources()["intel.com/net"]) == 2
    node.write_config([{"resourceName": "net", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]}}])
    assert node.kubelet.wait_for(lambda k: set(manager.servers) == {"intel.com/net"})


def test_configmap_symlink_swap_reloads(make_node):
    node = make_node()
    # the layout the kubelet makes for a ConfigMap volume: config.json -> ..data/config.json, ..data -> ..v1
    cm = node.root / "cm"
    (cm / "..v1").mkdir(parents=True)
    (cm / "..v1" / "config.json").write_text(node.config.read_text())
    os.symlink("..v1", cm / "..data")
    os.symlink("..data/config.json", cm / "config.json")
    manager = node.start_plugins(config_file=cm / "config.json")
    node.kubelet.wait_for_devices("intel.com/dpdk", 1)
    (cm / "..v2").mkdir()
    (cm / "..v2" / "config.json").write_text('{"resourceList": [{"resourceName": "only", "selectors": {}}]}')
    os.symlink("..v2", cm / "..data_tmp")
    os.replace(cm / "..data_tmp", cm / "..data")
    assert node.kubelet.wait_for(lambda k: set(manager.servers) == {"intel.com/only"})


def test_vf_removal_shrinks_the_pool(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("nvidia.com/rdma", 2)
    node.host.set_num_vfs(1, 1)
    assert node.kubelet.wait_for(lambda k: set(k.resources()["nvidia.com/rdma"]) == {node.host.vf_address(1, 0)})
    node.host.set_num_vfs(1, 3)
    assert node.kubelet.wait_for(lambda k: len(k.resources()["nvidia.com/rdma"]) == 3)


def test_vf_moved_into_a_pod_stays_in_its_pool_and_healthy_across_restart(node):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    moved = node.host.vf_address(0, 0)
    node.host.set_netdev(moved, None)  # the CNI moved it into the pod's namespace
    manager.poll_once(elapsed=manager.settings.resync_interval)  # force a full rediscovery now
    assert node.kubelet.resources()["intel.com/net"][moved].healthy
    manager.stop()
    node.managers.remove(manager)
    node.start_plugins()  # agent restart while the pod holds the VF
    devices = node.kubelet.wait_for(lambda k: len(k.resources().get("intel.com/net", {})) == 2)
    assert devices
    assert node.kubelet.resources()["intel.com/net"][moved].healthy


def test_pf_link_down_and_up(node):
    node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    node.kubelet.wait_for_devices("nvidia.com/rdma", 2)
    set_operstate(node.sysfs, "enp1s0f0", "down")

    def health(k, resource):
        return {s.healthy for s in k.resources()[resource].values()}

    assert node.kubelet.wait_for(lambda k: health(k, "intel.com/net") == {False}
                                 and health(k, "intel.com/dpdk") == {False})
    assert health(node.kubelet, "nvidia.com/rdma") == {True}  # another PF
    set_operstate(node.sysfs, "enp1s0f0", "up")
    assert node.kubelet.wait_for(lambda k: health(k, "intel.com/net") == {True})


def test_stop_removes_sockets(node):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    manager.stop()
    node.managers.remove(manager)
    assert sorted(p.name for p in node.dp_dir.iterdir()) == ["kubelet.sock"]
    assert node.kubelet.wait_for(lambda k: all(e.stream_ended.is_set() for e in k.endpoints.values()))


def test_plugins_started_before_the_kubelet_register_when_it_comes(node, caplog):
    node.kubelet.stop()
    caplog.set_level(logging.INFO, logger="sriovkit.deviceplugin.manager")
    node.start_plugins()
    node.kubelet.wait_for(lambda k: False, timeout=0.3)  # a few polls without a kubelet
    waiting = [r for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waiting) == 1
    node.kubelet.start()
    assert len(node.kubelet.wait_for_devices("intel.com/net", 2)) == 2


def test_plugin_that_goes_away_leaves_no_healthy_devices(node):
    manager = node.start_plugins()
    node.kubelet.wait_for_devices("intel.com/net", 2)
    manager.stop()
    node.managers.remove(manager)
    assert node.kubelet.wait_for(lambda k: not any(s.healthy for s in k.resources()["intel.com/net"].values()))
