"""networkData (KEP-4817) in a prepared claim's status after the agent's CNI attached its VF."""

from __future__ import annotations

import copy
import json

from sriovkit.dra.checkpoint import Checkpoint
from sriovkit.dra.kube import ConflictError
from sriovkit.dra.netstatus import ClaimNetworkStatus, network_data, with_network_data

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
PCI = "0000:11:00.2"
RESULT = {"cniVersion": "1.0.0",
          "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/x"},
                         {"name": "net1", "mac": "aa:aa:aa:aa:aa:aa"}],
          "ips": [{"address": "10.56.218.5/24", "interface": 0}, {"address": "2001:db8:0::5/64", "interface": 0},
                  {"address": "10.9.9.9/24", "interface": 1}]}


class FakeApi:
    def __init__(self, claim: dict) -> None:
        self.claim = claim
        self.conflicts = 0
        self.puts: list[dict] = []

    def get_claim(self, namespace: str, name: str) -> dict:
        return copy.deepcopy(self.claim)

    def patch_claim_devices_status(self, namespace: str, name: str, resource_version: str, devices: list) -> None:
        assert resource_version == self.claim["metadata"]["resourceVersion"]
        if self.conflicts:
            self.conflicts -= 1
            raise ConflictError("409")
        self.puts.append(devices)
        self.claim.setdefault("status", {})["devices"] = copy.deepcopy(devices)


def test_network_data_is_the_sandbox_interface_with_its_addresses_in_canonical_form():
    assert network_data("net1", RESULT) == {"interfaceName": "net1", "hardwareAddress": "02:00:00:00:00:01",
                                            "ips": ["10.56.218.5/24", "2001:db8::5/64"]}
    assert network_data("net2", {"interfaces": [], "ips": []}) == {"interfaceName": "net2"}


def test_the_entry_is_added_replaced_and_removed_other_entries_kept():
    key = (DRIVER, "pool", "dev")
    other = {"driver": "gpu.example.com", "pool": "p", "device": "g", "conditions": []}
    devices = with_network_data([other], key, {"interfaceName": "net1"})
    assert devices == [other, {"driver": DRIVER, "pool": "pool", "device": "dev",
                               "networkData": {"interfaceName": "net1"}}]
    devices = with_network_data(devices, key, {"interfaceName": "net2"})
    assert devices[1]["networkData"] == {"interfaceName": "net2"}
    assert with_network_data(devices, key, None) == [other]
    kept = with_network_data([{**devices[1], "data": {"x": 1}}], key, None)
    assert kept == [{"driver": DRIVER, "pool": "pool", "device": "dev", "data": {"x": 1}}]


def _node(tmp_path, pod_uid="pod-uid"):
    ckpt = Checkpoint(tmp_path)
    ckpt.put("claim-uid", {"uid": "claim-uid", "namespace": "ns", "name": "c", "pod_uid": pod_uid, "complete": True,
                           "devices": [{"pci": PCI, "pool": "node/0000-10-00-0", "device": "0000-11-00-2"}]})
    api = FakeApi({"metadata": {"uid": "claim-uid", "resourceVersion": "1"}, "status": {"allocation": {}}})
    return ClaimNetworkStatus(api, DRIVER, ckpt), api


def _env(command, pod_uid="pod-uid"):
    return {"CNI_COMMAND": command, "CNI_IFNAME": "net1", "CNI_CONTAINERID": "c1",
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_UID={pod_uid}"}


def test_add_writes_network_data_after_conflicts_and_del_removes_it(tmp_path):
    status, api = _node(tmp_path)
    api.conflicts = 2
    status.start()
    try:
        stdin = json.dumps({"cniVersion": "1.0.0", "type": "sriov", "deviceID": PCI}).encode()
        status.observe(_env("ADD"), stdin, json.dumps(RESULT).encode(), 0)
        # DEL's config without the deviceID (Multus rebuilt it): known by container and interface
        status.observe(_env("DEL"), json.dumps({"cniVersion": "1.0.0", "type": "sriov"}).encode(), b"", 0)
    finally:
        status.stop()
    assert api.puts == [
        [{"driver": DRIVER, "pool": "node/0000-10-00-0", "device": "0000-11-00-2",
          "networkData": network_data("net1", RESULT)}], []]


def test_nothing_written_for_a_failed_add_another_pod_or_an_unclaimed_vf(tmp_path):
    status, api = _node(tmp_path)
    status.start()
    try:
        stdin = json.dumps({"cniVersion": "1.0.0", "type": "sriov", "deviceID": PCI}).encode()
        status.observe(_env("ADD"), stdin, b'{"code": 7}', 1)
        status.observe(_env("ADD", pod_uid="someone-else"), stdin, json.dumps(RESULT).encode(), 0)
        unclaimed = json.dumps({"cniVersion": "1.0.0", "type": "sriov", "deviceID": "0000:11:00.0"}).encode()
        status.observe(_env("ADD"), unclaimed, json.dumps(RESULT).encode(), 0)
    finally:
        status.stop()
    assert api.puts == []
