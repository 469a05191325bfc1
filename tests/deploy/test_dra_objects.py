"""What the DRA driver writes to the API server validates against the Kubernetes API schemas
(strict): the ResourceSlices it publishes, withdrawn and tainted variants, and the names it makes."""

from __future__ import annotations

import re

import deploy_validate as validate
import pytest
from deploy_env import KUBERNETES_VERSION

from sriovkit.dra.slices import VfFacts, build_slices

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


def facts(pf: str, vf: str, index: int, **extra) -> VfFacts:
    base = dict(pci_address=vf, vendor="8086", device_id="1889", pf_device_id="1592", pf_pci_address=pf,
                pf_name="ens1f0", vf_index=index, link_type="ethernet", rdma_capable=False, numa_node=0,
                pcie_root="pci0000:00", resource_name="intel.com/sriov_dra")
    return VfFacts(**{**base, **extra})


DEVICES = [facts("0000:3b:00.0", "0000:3b:02.0", 0), facts("0000:3b:00.0", "0000:3b:02.1", 1, numa_node=-1),
           facts("0000:af:00.1", "0000:af:0a.7", 63, rdma_capable=True, link_type="infiniband", pcie_root="")]


@pytest.mark.parametrize(("health", "taint"), [({}, False), ({"0000:3b:02.1": False}, False),
                                               ({"0000:3b:02.1": False}, True)],
                         ids=["healthy", "withdrawn", "tainted"])
def test_published_slices_validate(health, taint):
    slices = build_slices("worker-0.example.com", DRIVER, DEVICES, health, taint_unhealthy=taint)
    assert len(slices) == 2
    problems = [p for i, s in enumerate(slices) for p in validate.object_problems(s, f"slice[{i}]", KUBERNETES_VERSION)]
    assert problems == []


def test_names_are_what_the_api_server_accepts():
    for s in build_slices("Worker-0.example.com", DRIVER, DEVICES, {}):
        assert _DNS_SUBDOMAIN.match(s["metadata"]["name"]) and len(s["metadata"]["name"]) <= 253
        pool = s["spec"]["pool"]["name"]
        assert len(pool) <= 253 and all(_DNS_SUBDOMAIN.match(part) for part in pool.lower().split("/"))
        for device in s["spec"]["devices"]:
            assert _DNS_LABEL.match(device["name"])
            for name in device["attributes"]:
                domain, _, ident = name.partition("/")
                assert _DNS_SUBDOMAIN.match(domain) and _C_IDENTIFIER.match(ident), name


@pytest.mark.parametrize(("taint", "per_slice"), [(False, 128), (True, 64)])
def test_a_pf_with_more_vfs_than_a_slice_holds_is_one_pool_of_several_slices(taint, per_slice):
    many = [facts("0000:3b:00.0", f"0000:3c:{i // 8:02x}.{i % 8}", i) for i in range(200)]
    slices = build_slices("worker-0", DRIVER, many, {}, taint_unhealthy=taint)
    assert [len(s["spec"]["devices"]) for s in slices] == [per_slice] * (200 // per_slice) + [200 % per_slice]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {len(slices)}
    assert len({s["metadata"]["name"] for s in slices}) == len(slices)
    assert sorted(d["name"] for s in slices for d in s["spec"]["devices"]) == sorted(
        f.pci_address.replace(":", "-").replace(".", "-") for f in many)
    problems = [p for i, s in enumerate(slices) for p in validate.object_problems(s, f"slice[{i}]", KUBERNETES_VERSION)]
    assert problems == []
