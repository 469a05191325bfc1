"""8. Device-plugin edges: hostile Allocate and GetPreferredAllocation requests over real gRPC
(duplicate, unknown, oversized IDs in many mixes), and the sockets' mode under umask 000."""


from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path

import grpc

from sriovkit.deviceplugin.api import deviceplugin_pb2 as pb
from sriovkit.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from sriovkit.deviceplugin.manager import DevicePluginManager, DevicePluginSettings
from sriovkit.deviceplugin.requests import MAX_DEVICE_ID_BYTES
from sriovkit.deviceplugin.server import socket_name
from sriovkit.host.sysfs import Sysfs
from sriovkit.kubesim import Kubelet
from sriovkit.sim import host as sim
from tests.reliability.scenarios.rig import Outcome

RESOURCE = "intel.com/net"
SHORT_DETAILS = 300


def allocate_cases(vf0: str, vf1: str) -> dict[str, list[list[str]]]:
    """AllocateRequests (each a list of containers' device lists) that must be refused."""
    huge = "x" * (1 << 20)
    return {
        "duplicate": [[vf0, vf0]],
        "duplicate among others": [[vf0, vf1, vf0]],
        "same device in two containers": [[vf0], [vf0]],
        "10k copies": [[vf0] * 10_000],
        "unknown": [["0000:99:00.1"]],
        "unknown after a good one": [[vf0, "0000:99:00.1"]],
        "unknown in the second container": [[vf0], ["nope"]],
        "PCI address with a newline": [[vf0 + "\n"]],
        "PCI address without its domain": [[vf0[5:]]],
        "empty id": [[""]],
        "oversized": [[huge]],
        "oversized unknown after duplicates": [[vf0, vf0, huge]],
        "just over the limit": [["0" * (MAX_DEVICE_ID_BYTES + 1)]],
        "control characters": [["\n\x00\x1b[31m" + "x" * 200]],
        "no devices": [[]],
    }


def preferred_cases(vf0: str, vf1: str) -> dict[str, tuple[list[str], list[str], int]]:
    """(available, must_include, size) that must be refused."""
    huge = "x" * (1 << 20)
    return {
        "must_include not available": ([vf0], [vf1], 1),
        "must_include unknown": ([vf0], ["0000:99:00.1"], 1),
        "duplicate available": ([vf0, vf0], [], 1),
        "duplicate must_include": ([vf0, vf1], [vf0, vf0], 2),
        "unknown available": ([vf0, "0000:99:00.1"], [], 1),
        "oversized available": ([vf0, huge], [], 1),
        "oversized must_include": ([vf0], [huge], 1),
        "size over the offer": ([vf0, vf1], [], 3),
        "negative size": ([vf0, vf1], [], -1),
        "size under must_include": ([vf0, vf1], [vf0, vf1], 1),
    }


def device_plugin_edges(tmp: Path) -> Outcome:
    """Plugins started under umask 000 on a simulated node with a kubelet stand-in: every socket
    0600; every hostile request INVALID_ARGUMENT with a short message and no device-info file
    written; then a normal allocation still works."""
    out = Outcome("device plugin: socket modes, duplicate/unknown/oversized IDs")
    host = sim.create(tmp / "host", {"pfs": [{"name": "dpe0", "numVfs": 3}]})
    config = tmp / "config.json"
    config.write_text(json.dumps({"resourceList": [{"resourceName": "net", "selectors": {"drivers": ["iavf"]}}]}))
    kubelet = Kubelet(tmp / "dp", watch_interval=0.05)
    kubelet.start()
    manager = DevicePluginManager(DevicePluginSettings(
        config_file=config, sysfs=Sysfs(host.root), proc_root=str(tmp / "proc"), device_plugin_dir=tmp / "dp",
        devinfo_dir=tmp / "devinfo", cdi_dir=tmp / "cdi", poll_interval=0.05))
    old = os.umask(0)
    try:
        manager.start()
    finally:
        os.umask(old)
    try:
        kubelet.wait_for_devices(RESOURCE, 3)
        # the files every device gets at start are written by then: a refused request may add none
        if not manager.device_info_prewritten():
            out.fail("device-info files at start", "the start-up pass did not finish")
        sock = tmp / "dp" / socket_name(RESOURCE)
        out.tried += 1
        if stat.S_IMODE(os.lstat(sock).st_mode) != 0o600:
            out.fail("socket mode under umask 000", oct(stat.S_IMODE(os.lstat(sock).st_mode)))
        vf0, vf1 = host.vf_address(0, 0), host.vf_address(0, 1)
        with grpc.insecure_channel(f"unix:{sock}") as channel:
            stub = pb_grpc.DevicePluginStub(channel)
            _allocate_cases(out, stub, tmp / "devinfo", allocate_cases(vf0, vf1))
            _preferred_cases(out, stub, preferred_cases(vf0, vf1))
            _mixes(out, stub, tmp / "devinfo", [vf0, vf1, host.vf_address(0, 2)])
            out.tried += 1
            try:
                answer = stub.Allocate(pb.AllocateRequest(container_requests=[
                    pb.ContainerAllocateRequest(devices_ids=[vf0, vf1])]), timeout=10)
                if answer.container_responses[0].envs.get("PCIDEVICE_INTEL_COM_NET") != f"{vf0},{vf1}":
                    out.fail("normal allocate after the refusals", str(answer))
            except grpc.RpcError as exc:
                out.fail("normal allocate after the refusals", f"{exc.code()}: {exc.details()}")
    finally:
        manager.stop()
        kubelet.stop()
    return out


def _refused(out: Outcome, case: str, call: object, request: object, devinfo: Path | None = None) -> None:
    out.tried += 1
    before = _files(devinfo)
    try:
        call(request, timeout=10)  # type: ignore[operator]
    except grpc.RpcError as exc:
        details = exc.details() or ""
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
            out.fail(case, f"{exc.code()} instead of INVALID_ARGUMENT: {details[:120]!r}")
        elif not details or len(details) > SHORT_DETAILS:
            out.fail(case, f"message of {len(details)} characters")
    else:
        out.fail(case, "accepted")
    if _files(devinfo) != before:
        out.leaks.append(f"{case}: device-info files written for a refused request")


def _files(directory: Path | None) -> list[str]:
    if directory is None or not directory.exists():
        return []
    return sorted(str(p) for p in directory.rglob("*"))


def _allocate_cases(out: Outcome, stub: pb_grpc.DevicePluginStub, devinfo: Path,
                    cases: dict[str, list[list[str]]]) -> None:
    for case, containers in cases.items():
        _refused(out, f"allocate {case}", stub.Allocate, pb.AllocateRequest(container_requests=[
            pb.ContainerAllocateRequest(devices_ids=ids) for ids in containers]), devinfo)


def _preferred_cases(out: Outcome, stub: pb_grpc.DevicePluginStub,
                     cases: dict[str, tuple[list[str], list[str], int]]) -> None:
    for case, (available, must, size) in cases.items():
        _refused(out, f"preferred {case}", stub.GetPreferredAllocation, pb.PreferredAllocationRequest(
            container_requests=[pb.ContainerPreferredAllocationRequest(
                available_deviceIDs=available, must_include_deviceIDs=must, allocation_size=size)]))


def _mixes(out: Outcome, stub: pb_grpc.DevicePluginStub, devinfo: Path, vfs: list[str]) -> None:
    """Every ordering of two good IDs with one bad one (a repeat, an unknown, an oversized one),
    in one container and split over two."""
    bad = {"repeat": vfs[0], "unknown": "0000:42:00.7", "oversized": "q" * (MAX_DEVICE_ID_BYTES * 4)}
    for kind, extra in bad.items():
        for order in sorted(set(itertools.permutations([vfs[0], vfs[1], extra]))):
            ids = list(order)
            _refused(out, f"allocate mix {kind} {ids!r:.60}", stub.Allocate, pb.AllocateRequest(
                container_requests=[pb.ContainerAllocateRequest(devices_ids=ids)]), devinfo)
            _refused(out, f"allocate split mix {kind}", stub.Allocate, pb.AllocateRequest(container_requests=[
                pb.ContainerAllocateRequest(devices_ids=ids[:1]), pb.ContainerAllocateRequest(devices_ids=ids[1:])]),
                devinfo)
            if kind != "repeat":
                _refused(out, f"preferred mix {kind}", stub.GetPreferredAllocation, pb.PreferredAllocationRequest(
                    container_requests=[pb.ContainerPreferredAllocationRequest(
                        available_deviceIDs=[vfs[2], *ids], allocation_size=2)]))
