"""The DRA driver over real gRPC: registration through the plugin watcher, ResourceSlices on the
API server, prepare/unprepare on the simulated host, restarts, health."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from sriovkit import logs
from sriovkit.host.discover import discover_device
from sriovkit.sim.host import set_operstate
from tests.support.dra_node import DRIVER, MLX_VF0, NODE_NAME, PF0_VF2, DraNode, vf_config

POOL0, POOL1 = f"{NODE_NAME}/0000-10-00-0", f"{NODE_NAME}/0000-12-00-0"
ALL_DRA = {POOL0: ["0000-11-00-2"], POOL1: ["0000-13-00-0", "0000-13-00-1"]}


def kind(uid: str) -> str:
    return f"{DRIVER}/claim-{uid}"


def cdi_spec(node: DraNode, uid: str) -> dict:
    return json.loads((node.cdi_dir / f"sriovkit-dra-{uid}.json").read_text())


def test_registers_as_dra_plugin_and_publishes_only_dra_vfs_beside_the_device_plugin(dra_node):
    dra_node.start_agent()
    endpoint = dra_node.kubelet.wait_for_dra(DRIVER)
    assert endpoint.version == "v1.DRAPlugin"
    assert endpoint.socket_path == str(dra_node.root / "plugins" / DRIVER / "dra.sock")
    assert os.path.exists(dra_node.root / "reg" / f"{DRIVER}-reg.sock")
    dra_node.wait_published(ALL_DRA)
    (first,) = [s for s in dra_node.slices() if s["spec"]["pool"]["name"] == POOL1]
    attrs = first["spec"]["devices"][0]["attributes"]
    assert attrs[f"{DRIVER}/PFName"] == {"string": "enp1s0f1"}
    assert attrs["k8s.cni.cncf.io/resourceName"] == {"string": "intel.com/vfs"}
    assert attrs[f"{DRIVER}/rdmaCapable"] == {"bool": True}
    # the device plugin serves its resource only; the held and the DRA VFs are not in any DP pool
    dp = dra_node.kubelet.wait_for_devices("intel.com/net", 2)
    assert sorted(dp) == ["0000:11:00.0", "0000:11:00.1"]
    assert set(dra_node.kubelet.resources()) == {"intel.com/net"}
    dra_ids = {d.replace("-", ":", 2).rsplit("-", 1)[0] + "." + d.rsplit("-", 1)[1]
               for devices in ALL_DRA.values() for d in devices}
    assert dra_ids == {PF0_VF2, MLX_VF0, "0000:13:00.1"} and not dra_ids & set(dp)


def test_prepare_binds_vfio_writes_cdi_and_device_info_and_unprepare_restores(dra_node):
    dra_node.start_agent()
    dra_node.kubelet.wait_for_dra(DRIVER)
    dra_node.wait_published(ALL_DRA)
    ns, uid, name = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(["vf"], driver="vfio-pci",
                                                                       netAttachDefName="sriov-net")])
    answer = dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid]
    assert answer.error == ""
    (device,) = answer.devices
    assert (list(device.request_names), device.pool_name, device.device_name) == (["vf"], POOL0, "0000-11-00-2")
    # one CDI device per VF, named by its PCI address: what Multus 4.x hands the CNI as deviceID
    assert list(device.cdi_device_ids) == [f"{kind(uid)}={PF0_VF2}"]
    vf = discover_device(dra_node.sysfs, PF0_VF2)
    assert vf.driver == "vfio-pci"
    spec = cdi_spec(dra_node, uid)
    assert spec["kind"] == kind(uid)
    by_name = {d["name"]: d["containerEdits"] for d in spec["devices"]}
    assert list(by_name) == [PF0_VF2]
    edits = by_name[PF0_VF2]
    assert {n["path"] for n in edits["deviceNodes"]} == {"/dev/vfio/vfio", f"/dev/vfio/{vf.iommu_group}"}
    assert f"SRIOVNETWORK_VF_DEVICE_0000_11_00_2={PF0_VF2}" in edits["env"]
    assert f"SRIOVNETWORK_0000_11_00_2_VFIO_DEVICE=/dev/vfio/{vf.iommu_group}" in edits["env"]
    assert "SRIOVNETWORK_NET_ATTACH_DEF_NAME=sriov-net" in edits["env"]
    assert f"PCIDEVICE_INTEL_COM_VFS={PF0_VF2}" in edits["env"]
    assert f"SRIOVNETWORK_PCI_ADDRESSES={PF0_VF2}" in edits["env"]
    devinfo = dra_node.devinfo_dir / f"intel.com-vfs-{PF0_VF2}-device.json"
    assert json.loads(devinfo.read_text())["pci"]["pci-address"] == PF0_VF2
    # the kubelet asks again (it lost our answer): same answer, nothing done twice
    again = dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid]
    assert list(again.devices[0].cdi_device_ids) == list(device.cdi_device_ids)

    gone = dra_node.kubelet.unprepare_claims(DRIVER, [(ns, uid, name)])
    assert gone[uid].error == ""
    assert discover_device(dra_node.sysfs, PF0_VF2).driver == "iavf"
    assert not devinfo.exists() and not (dra_node.cdi_dir / f"sriovkit-dra-{uid}.json").exists()
    assert dra_node.kubelet.unprepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""  # idempotent
    assert json.loads((dra_node.state_dir / "checkpoint.json").read_text())["claims"] == {}


def test_rdma_vf_gets_its_nodes_and_the_vf_keeps_its_driver(dra_node):
    dra_node.start_agent()
    dra_node.kubelet.wait_for_dra(DRIVER)
    ns, uid, name = dra_node.claim([("r", "0000-13-00-0")], [vf_config(addVhostMount=True)])
    answer = dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid]
    assert answer.error == ""
    assert discover_device(dra_node.sysfs, MLX_VF0).driver == "mlx5_core"
    edits = {d["name"]: d["containerEdits"] for d in cdi_spec(dra_node, uid)["devices"]}[MLX_VF0]
    paths = {n["path"] for n in edits["deviceNodes"]}
    assert {"/dev/vhost-net", "/dev/net/tun"} <= paths
    assert any(p.startswith("/dev/infiniband/uverbs") for p in paths)
    assert any(e.startswith("SRIOVNETWORK_0000_13_00_0_RDMA_DEVICE=") for e in edits["env"])
    assert dra_node.kubelet.unprepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""


def test_every_claim_of_a_request_gets_an_answer(dra_node):
    dra_node.start_agent()
    dra_node.kubelet.wait_for_dra(DRIVER)
    good = dra_node.claim([("a", "0000-13-00-1")])
    not_ours = dra_node.claim([("b", "0000-11-00-0")])  # a device-plugin VF: not offered through DRA
    bad_config = dra_node.claim([("c", "0000-13-00-0")], [vf_config(drivr="vfio-pci")])
    missing = ("default", "0000-uid-missing", "no-such-claim")
    answers = dra_node.kubelet.prepare_claims(DRIVER, [good, not_ours, bad_config, missing])
    assert set(answers) == {good[1], not_ours[1], bad_config[1], missing[1]}
    assert answers[good[1]].error == "" and len(answers[good[1]].devices) == 1
    assert "device node-a/0000-10-00-0/0000-11-00-0 is not offered by this node" in answers[not_ours[1]].error
    assert "opaque.parameters.drivr: unknown field" in answers[bad_config[1]].error
    assert "404" in answers[missing[1]].error
    # the failed claims changed nothing
    assert discover_device(dra_node.sysfs, MLX_VF0).driver == "mlx5_core"
    checkpoint = json.loads((dra_node.state_dir / "checkpoint.json").read_text())["claims"]
    assert list(checkpoint) == [good[1]]


def test_a_failed_bind_rolls_back_every_step(dra_node):
    dra_node.start_agent()
    dra_node.kubelet.wait_for_dra(DRIVER)
    ns, uid, name = dra_node.claim([("a", "0000-13-00-0"), ("b", "0000-13-00-1")],
                                   [vf_config(["a"], driver="vfio-pci"), vf_config(["b"], driver="no_such_drv")])
    answer = dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid]
    assert "no driver no_such_drv loaded" in answer.error
    for vf in (MLX_VF0, "0000:13:00.1"):
        assert discover_device(dra_node.sysfs, vf).driver == "mlx5_core"  # the first bind undone
    assert not list(dra_node.cdi_dir.glob("*.json")) if dra_node.cdi_dir.exists() else True
    assert json.loads((dra_node.state_dir / "checkpoint.json").read_text())["claims"] == {}


def test_each_line_of_a_claim_names_it_and_a_failure_is_logged_once(dra_node):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("sriovkit.dra")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        dra_node.start_agent()
        dra_node.kubelet.wait_for_dra(DRIVER)
        bad = dra_node.claim([("a", "0000-13-00-0"), ("b", "0000-13-00-1")],
                             [vf_config(["a"], driver="vfio-pci"), vf_config(["b"], driver="no_such_drv")])
        good = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(["vf"])])
        answers = dra_node.kubelet.prepare_claims(DRIVER, [bad, good])
        dra_node.kubelet.unprepare_claims(DRIVER, [good])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert answers[bad[1]].error and not answers[good[1]].error
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    (failure,) = [r for r in records if r["level"] in ("warning", "error") and r.get("claim_uid") == bad[1]]
    assert failure["claim"] == f"{bad[0]}/{bad[2]}" and "no_such_drv" in failure["msg"]
    mine = [r for r in records if r.get("claim_uid") == good[1]]
    assert {r["msg"].split(" ")[0] for r in mine} >= {"claim"} and len(mine) >= 2  # prepared, unprepared
    assert all(r["claim"] == f"{good[0]}/{good[2]}" for r in mine)


def test_agent_restart_between_prepare_and_unprepare_loses_nothing_and_double_uses_nothing(dra_node):
    dra_node.start_agent()
    first = dra_node.kubelet.wait_for_dra(DRIVER)
    ns, uid, name = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(driver="vfio-pci")])
    assert dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    dra_node.stop_agent()
    assert discover_device(dra_node.sysfs, PF0_VF2).driver == "vfio-pci"  # a stopping agent keeps claims

    dra_node.start_agent()
    assert dra_node.kubelet.wait_for(lambda k: k.dra_drivers.get(DRIVER) not in (None, first), timeout=5)
    other = dra_node.claim([("vf", "0000-11-00-2")])
    refused = dra_node.kubelet.prepare_claims(DRIVER, [other])[other[1]]
    assert f"device 0000-11-00-2 is already prepared for claim {uid}" in refused.error
    again = dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid]
    assert again.error == "" and again.devices[0].device_name == "0000-11-00-2"
    assert dra_node.kubelet.unprepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    assert discover_device(dra_node.sysfs, PF0_VF2).driver == "iavf"
    assert not (dra_node.cdi_dir / f"sriovkit-dra-{uid}.json").exists()


@pytest.mark.parametrize("health_api", ["v1beta1", "v1alpha1"])
def test_pf_link_down_is_unhealthy_through_the_health_stream_and_withdrawn_from_the_slice(dra_node, health_api):
    dra_node.kubelet.dra_health_apis = (health_api,)  # a 1.35+ kubelet, or a 1.34 one
    dra_node.start_agent()
    endpoint = dra_node.kubelet.wait_for_dra(DRIVER)
    dra_node.wait_published(ALL_DRA)
    mlx = [(POOL1, "0000-13-00-0"), (POOL1, "0000-13-00-1")]
    dra_node.kubelet.wait_for_dra_health(DRIVER, lambda h: all(h.get(d) == "HEALTHY" for d in mlx))
    set_operstate(dra_node.sysfs, "enp1s0f1", "down")
    health = dra_node.kubelet.wait_for_dra_health(DRIVER, lambda h: all(h.get(d) == "UNHEALTHY" for d in mlx))
    assert endpoint.health_api == health_api
    assert health[(POOL0, "0000-11-00-2")] == "HEALTHY"
    dra_node.wait_published({POOL0: ["0000-11-00-2"], POOL1: []})
    set_operstate(dra_node.sysfs, "enp1s0f1", "up")
    dra_node.kubelet.wait_for_dra_health(DRIVER, lambda h: all(h.get(d) == "HEALTHY" for d in mlx))
    dra_node.wait_published(ALL_DRA)
    (pool1,) = [s for s in dra_node.slices() if s["spec"]["pool"]["name"] == POOL1]
    assert pool1["spec"]["pool"]["generation"] == 3  # created, withdrawn, back


def test_vfs_coming_and_going_update_the_slices(dra_node):
    dra_node.start_agent()
    dra_node.kubelet.wait_for_dra(DRIVER)
    dra_node.wait_published(ALL_DRA)
    dra_node.host.set_num_vfs(1, 0)
    dra_node.wait_published({POOL0: ["0000-11-00-2"]})
    dra_node.host.set_num_vfs(1, 2)
    dra_node.wait_published(ALL_DRA)


def test_a_rebound_vf_stays_in_its_dra_pool_unchanged_and_joins_no_device_plugin_pool(dra_node):
    # the DP resource after the DRA one takes vfio-pci VFs: a VF bound to vfio-pci for a claim
    # must not become one of them, and its slice entry must not change while the pod has it
    dra_node.write_config([
        {"resourceName": "vfs", "servedBy": "dra", "selectors": {"drivers": ["iavf", "mlx5_core"]}},
        {"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}},
    ])
    driver = dra_node.start_agent()
    dra_node.kubelet.wait_for_dra(DRIVER)
    assert sorted(dra_node.kubelet.wait_for_devices("intel.com/dpdk", 1)) == ["0000:11:00.3"]
    expected = {POOL0: ["0000-11-00-0", "0000-11-00-1", "0000-11-00-2"], POOL1: ["0000-13-00-0", "0000-13-00-1"]}
    dra_node.wait_published(expected)
    before = dra_node.slices()
    ns, uid, name = dra_node.claim([("a", "0000-11-00-2"), ("b", "0000-13-00-0")],
                                   [vf_config(driver="vfio-pci")])
    assert dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    manager = dra_node.running[-1][0]
    manager.poll_once(elapsed=manager.settings.resync_interval)  # a full rediscovery
    assert sorted(manager.pools()["intel.com/dpdk"].device_ids) == ["0000:11:00.3"]
    assert sorted(dra_node.kubelet.resources()["intel.com/dpdk"]) == ["0000:11:00.3"]
    assert driver.slices({}) and dra_node.published() == expected
    assert dra_node.slices() == before  # same devices, attributes and generation
    assert dra_node.kubelet.unprepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    manager.poll_once(elapsed=manager.settings.resync_interval)
    assert sorted(manager.pools()["intel.com/dpdk"].device_ids) == ["0000:11:00.3"]
    assert dra_node.slices() == before


def _interrupt_after_bind(node: DraNode, uid: str) -> None:
    """What an agent killed between binding the driver and finishing leaves: the journal entry
    not complete, the VF rebound, no CDI spec yet."""
    path = node.state_dir / "checkpoint.json"
    data = json.loads(path.read_text())
    data["claims"][uid]["complete"] = False
    path.write_text(json.dumps(data))
    (node.cdi_dir / f"sriovkit-dra-{uid}.json").unlink()


def test_an_interrupted_prepare_is_undone_by_unprepare_or_redone_by_prepare(dra_node):
    dra_node.start_agent()
    first = dra_node.kubelet.wait_for_dra(DRIVER)
    ns, uid, name = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(driver="vfio-pci")])
    assert dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    dra_node.stop_agent()
    _interrupt_after_bind(dra_node, uid)
    dra_node.start_agent()
    assert dra_node.kubelet.wait_for(lambda k: k.dra_drivers.get(DRIVER) not in (None, first))
    # the kubelet retries prepare: undone, then prepared anew (CDI spec back, still vfio-pci)
    assert dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    assert (dra_node.cdi_dir / f"sriovkit-dra-{uid}.json").exists()
    assert discover_device(dra_node.sysfs, PF0_VF2).driver == "vfio-pci"
    _interrupt_after_bind(dra_node, uid)
    # or the pod is gone and the kubelet unprepares: the VF gets its driver back
    assert dra_node.kubelet.unprepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    assert discover_device(dra_node.sysfs, PF0_VF2).driver == "iavf"
    assert json.loads((dra_node.state_dir / "checkpoint.json").read_text())["claims"] == {}


def test_readiness_says_what_keeps_the_driver_unusable(dra_node):
    dra_node.api.fail_next["POST resourceslices"] = 1000  # the API server refuses every create
    driver = dra_node.start_agent()
    dra_node.kubelet.wait_for_dra(DRIVER)
    assert dra_node.kubelet.wait_for(lambda _: driver.server.registered is True)
    assert dra_node.api.wait_for(lambda _: driver.publisher.last_error is not None)
    (problem,) = driver.readiness_problems()
    assert problem.startswith(f"DRA driver {DRIVER}: ResourceSlices not published: create resourceslice ")
    assert "500" in problem
    dra_node.api.fail_next.clear()  # the API server is back: the backoff retries and publishes
    dra_node.wait_published(ALL_DRA, timeout=15)
    assert dra_node.api.wait_for(lambda _: driver.readiness_problems() == [])


def test_dra_resources_without_a_dra_driver_are_offered_by_nothing_and_say_so(dra_node, caplog):
    from sriovkit.deviceplugin.manager import DevicePluginManager, DevicePluginSettings

    manager = DevicePluginManager(DevicePluginSettings(
        config_file=dra_node.root / "config.json", sysfs=dra_node.sysfs, proc_root=str(dra_node.root / "proc"),
        device_plugin_dir=dra_node.root / "dp", devinfo_dir=dra_node.devinfo_dir, poll_interval=0.05))
    with caplog.at_level("WARNING"):
        manager.start()
    try:
        assert set(manager.pools()) == {"intel.com/net"}
        assert [r.getMessage() for r in caplog.records if "servedBy dra" in r.getMessage()] == [
            "resources intel.com/vfs say servedBy dra but the agent runs without --dra: nothing offers them"]
    finally:
        manager.stop()


def test_kubelet_restart_and_a_removed_socket_bring_a_new_registration(dra_node):
    dra_node.start_agent()
    first = dra_node.kubelet.wait_for_dra(DRIVER)
    ns, uid, name = dra_node.claim([("vf", "0000-13-00-1")])
    assert dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    dra_node.kubelet.restart()  # the plugin watcher looks at the registry again: the driver registers anew
    assert dra_node.kubelet.wait_for(lambda k: k.dra_drivers.get(DRIVER) not in (None, first))
    second = dra_node.kubelet.dra_drivers[DRIVER]
    again = dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid]  # the kubelet re-prepares after restart
    assert again.error == "" and again.devices[0].device_name == "0000-13-00-1"
    (dra_node.root / "reg" / f"{DRIVER}-reg.sock").unlink()  # someone removed our socket: served again
    assert dra_node.kubelet.wait_for(lambda k: k.dra_drivers.get(DRIVER) not in (None, second), timeout=10)
    assert (dra_node.root / "plugins" / DRIVER / "dra.sock").exists()
    assert dra_node.kubelet.unprepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""


def test_a_live_socket_of_another_process_is_refused_and_left_alone(dra_node):
    import socket as sk

    from sriovkit.unixsocket import SocketInUseError

    path = dra_node.root / "plugins" / DRIVER / "dra.sock"
    path.parent.mkdir(parents=True)
    other = sk.socket(sk.AF_UNIX, sk.SOCK_STREAM)
    other.bind(str(path))
    other.listen()
    try:
        with pytest.raises(SocketInUseError, match="another process is serving on this socket"):
            dra_node.start_agent()
        assert path.exists() and not (dra_node.root / "reg" / f"{DRIVER}-reg.sock").exists()
    finally:
        other.close()


def test_sockets_are_0600(dra_node):
    dra_node.start_agent()
    for path in (dra_node.root / "plugins" / DRIVER / "dra.sock", dra_node.root / "reg" / f"{DRIVER}-reg.sock"):
        assert (path.stat().st_mode & 0o777) == 0o600


def test_slices_deleted_by_a_restarting_kubelet_come_back_when_it_registers_the_driver(dra_node):
    from sriovkit.kubesim.apiserver import SLICES

    dra_node.start_agent()
    first = dra_node.kubelet.wait_for_dra(DRIVER)
    dra_node.wait_published(ALL_DRA)
    # what a kubelet does at start for drivers not registered (yet): wipe the node's slices
    for s in dra_node.slices():
        dra_node.api.delete(SLICES, "", s["metadata"]["name"])
    assert dra_node.published() == {}
    dra_node.kubelet.restart()
    assert dra_node.kubelet.wait_for(lambda k: k.dra_drivers.get(DRIVER) not in (None, first))
    dra_node.wait_published(ALL_DRA, timeout=5)  # well before the 30 s resync
