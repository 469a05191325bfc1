"""The slice publisher against the API server stand-in through the real client: a pool of several
slices is rewritten whole, every slice with the same new generation, when any of it changes."""

from __future__ import annotations

from sriovkit.dra.kube import KubernetesDraApi
from sriovkit.dra.publisher import SlicePublisher
from sriovkit.dra.slices import VfFacts, build_slices
from sriovkit.kubesim.apiserver import SLICES, FakeKubeApi

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"


def vf(i: int) -> VfFacts:
    return VfFacts(pci_address=f"0000:3c:{i // 8:02x}.{i % 8}", vendor="8086", device_id="1889", pf_device_id="1592",
                   pf_pci_address="0000:3b:00.0", pf_name="ens1f0", vf_index=i, link_type="ethernet",
                   rdma_capable=False, numa_node=0, pcie_root="pci0000:00", resource_name="intel.com/vfs")


def test_a_multi_slice_pool_changes_as_one_generation(tmp_path):
    api = FakeKubeApi()
    api.start()
    try:
        state = {"vfs": [vf(i) for i in range(200)], "health": {}}
        publisher = SlicePublisher(KubernetesDraApi(kubeconfig=str(api.write_kubeconfig(tmp_path / "kc"))), "n",
                                   DRIVER, lambda gens: build_slices("n", DRIVER, state["vfs"], state["health"],
                                                                     generations=gens))

        def published():
            with api.cond:
                pools = {o["metadata"]["name"]: (o["spec"]["pool"], len(o["spec"]["devices"]))
                         for (k, _, _), o in api.objects.items() if k == SLICES}
            return {name: (pool["generation"], pool["resourceSliceCount"], n) for name, (pool, n) in pools.items()}

        publisher.sync_once()
        assert sorted(published().values()) == [(1, 2, 72), (1, 2, 128)]
        publisher.sync_once()  # nothing changed: nothing written
        puts = [r for r in api.requests if r.startswith("PUT")]
        assert puts == []
        state["health"] = {"0000:3c:00.0": False}  # one VF of the first slice withdrawn
        publisher.sync_once()
        assert sorted(published().values()) == [(2, 2, 71), (2, 2, 128)]  # both slices: generation 2
        state["vfs"] = state["vfs"][:100]  # fewer VFs: one slice is enough
        publisher.sync_once()
        assert list(published().values()) == [(3, 1, 99)]
    finally:
        api.stop()
