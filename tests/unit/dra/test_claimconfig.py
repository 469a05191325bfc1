"""Reading a claim's allocation and its VfConfig opaque parameters."""

from __future__ import annotations

import pytest

from sriovkit.dra.claimconfig import ClaimError, VfConfig, allocated_devices, parse_vf_config, reserved_pod_uid

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
API = f"{DRIVER}/v1alpha1"


def vfconfig(**fields):
    return {"apiVersion": API, "kind": "VfConfig", **fields}


def claim(results, config=(), reserved=()):
    return {"metadata": {"namespace": "ns", "name": "c", "uid": "u1"},
            "status": {"allocation": {"devices": {"results": list(results), "config": list(config)}},
                       "reservedFor": list(reserved)}}


def result(request, device, driver=DRIVER, pool="node/0000-10-00-0"):
    return {"request": request, "driver": driver, "pool": pool, "device": device}


def opaque(source, params, requests=(), driver=DRIVER):
    return {"source": source, "requests": list(requests), "opaque": {"driver": driver, "parameters": params}}


def test_upstream_vfconfig_fields():
    config, given = parse_vf_config(vfconfig(driver="vfio-pci", ifName="net1", netAttachDefName="n",
                                             netAttachDefNamespace="o", addVhostMount=True, vf={"vlan": 10}),
                                    group=DRIVER, where="p")
    assert config == VfConfig("vfio-pci", True, "net1", "n", "o", {"vlan": 10})
    assert given == {"driver", "ifName", "netAttachDefName", "netAttachDefNamespace", "addVhostMount", "vf"}


@pytest.mark.parametrize(("params", "message"), [
    ({"driver": "vfio-pci"}, "p: apiVersion/kind must be sriovnetwork.k8snetworkplumbingwg.io/v1alpha1/VfConfig"),
    (vfconfig(Driver="vfio-pci"), "p.Driver: unknown field"),
    (vfconfig(driver=3), "p.driver: must be a str (value: 3)"),
    (vfconfig(driver="../x"), "p.driver: must be a kernel driver name"),
    (vfconfig(addVhostMount="yes"), "p.addVhostMount: must be a bool"),
    (vfconfig(ifName="a-very-long-interface"), "p.ifName: must be an interface name"),
    (vfconfig(vf={"vlan": "10"}), "p.vf.vlan: must be a int"),
    (vfconfig(vf={"mtu": 9000}), "p.vf.mtu: unknown field"),
    ("text", "p: must be a VfConfig object"),
])
def test_bad_vfconfig_is_one_line_naming_the_field(params, message):
    with pytest.raises(ClaimError) as exc:
        parse_vf_config(params, group=DRIVER, where="p")
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_only_this_drivers_results_and_configs():
    c = claim([result("a", "0000-11-00-0"), result("b", "gpu0", driver="gpu.example.com")],
              [opaque("FromClaim", {"anything": 1}, driver="gpu.example.com"),
               opaque("FromClaim", vfconfig(driver="vfio-pci"), ["a"])])
    devices = allocated_devices(c, driver=DRIVER, group=DRIVER)
    assert [(d.request, d.device, d.config.driver) for d in devices] == [("a", "0000-11-00-0", "vfio-pci")]


def test_class_configs_first_then_claim_later_wins_per_field():
    c = claim([result("a", "d0"), result("b", "d1"), result("a/sub", "d2")], [
        opaque("FromClaim", vfconfig(ifName="net5"), ["a"]),
        opaque("FromClass", vfconfig(driver="vfio-pci", addVhostMount=True, netAttachDefName="cls")),
        opaque("FromClaim", vfconfig(netAttachDefName="mine"), ["a", "b"]),
    ])
    d0, d1, d2 = allocated_devices(c, driver=DRIVER, group=DRIVER)
    assert d0.config == VfConfig("vfio-pci", True, "net5", "mine")
    assert d1.config == VfConfig("vfio-pci", True, "", "mine")
    assert d2.config == d0.config  # a config for request "a" applies to its subrequest "a/sub"


@pytest.mark.parametrize(("c", "message"), [
    ({"metadata": {"namespace": "ns", "name": "c"}, "status": {}}, "claim ns/c: status.allocation: not allocated"),
    (claim([result("a", "x", driver="other")]), "claim ns/c: status.allocation.devices.results: no device of driver"),
    (claim([result("a", "d")], [{"source": "FromNowhere", "opaque": {}}]), "claim ns/c: status.allocation.devices"
     ".config[0].source: invalid"),
    (claim([result("a", "d")], [opaque("FromClaim", vfconfig(drivr="x"))]), "claim ns/c: config[0].opaque"
     ".parameters.drivr: unknown field"),
])
def test_claims_that_cannot_be_prepared(c, message):
    with pytest.raises(ClaimError) as exc:
        allocated_devices(c, driver=DRIVER, group=DRIVER)
    assert str(exc.value).startswith(message)


def test_reserved_pod():
    c = claim([], reserved=[{"resource": "pods", "name": "p", "uid": "pod-1"}])
    assert reserved_pod_uid(c) == "pod-1"
    assert reserved_pod_uid(claim([])) == ""
