"""The agent publishes its pools for the CNI's own picks (sriovkit.cni.pools) and withdraws them."""

from __future__ import annotations

from sriovkit.cni.pools import pooled_devices


def test_pools_published_on_start_follow_the_config_and_go_at_stop(node):
    path = node.root / "cni-state" / ".agent-pools.json"
    manager = node.start_plugins(pools_file=path)
    node.kubelet.wait_for_devices("intel.com/net", 2)
    pooled = pooled_devices(path)
    assert pooled[node.host.vf_address(0, 0)] == "intel.com/net"
    assert pooled[node.host.vf_address(0, 2)] == "intel.com/dpdk"
    assert pooled[node.host.vf_address(1, 0)] == "nvidia.com/rdma"
    node.write_config([{"resourceName": "net", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]}},
                       {"resourceName": "held", "servedBy": "none", "selectors": {"drivers": ["vfio-pci"]}}])
    for _ in range(200):
        manager.poll_once(elapsed=1.0)
        pooled = pooled_devices(path)
        if node.host.vf_address(0, 2) not in pooled:
            break
    assert set(pooled.values()) == {"intel.com/net"}  # a held-back pool is offered by no one: pickable
    manager.stop()
    assert not path.exists()
