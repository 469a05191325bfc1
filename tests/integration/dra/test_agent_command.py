"""`sriovctl agent --dra` as a process: registers with kubesim, publishes slices to the fake API
server, prepares a claim, and removes its sockets on SIGTERM; bad flags are one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sriovkit.host.discover import discover_device
from sriovkit.kubesim.apiserver import rbac_verb
from sriovkit.sim.host import set_operstate
from tests.support.dra_node import DRIVER, NODE_NAME, PF0_VF2, vf_config

AGENT_NEEDS = Path(__file__).resolve().parents[3] / "deploy" / "agent-needs.yaml"

POOL0 = f"{NODE_NAME}/0000-10-00-0"


def test_agent_with_dra_serves_claims_and_cleans_up(dra_node):
    cmd = dra_node.dra_agent_cmd()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        dra_node.kubelet.wait_for_dra(DRIVER, timeout=20)
        dra_node.api.wait_for(lambda _: POOL0 in dra_node.published(), timeout=20)
        ns, uid, name = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(driver="vfio-pci")])
        assert dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
        assert discover_device(dra_node.sysfs, PF0_VF2).driver == "vfio-pci"
        assert dra_node.kubelet.unprepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
        assert discover_device(dra_node.sysfs, PF0_VF2).driver == "iavf"
        set_operstate(dra_node.sysfs, "enp1s0f0", "down")  # a slice update
        dra_node.api.wait_for(lambda _: dra_node.published().get(POOL0) == [], timeout=20)
        dra_node.host.set_num_vfs(1, 0)  # a pool gone: its slice deleted
        dra_node.api.wait_for(lambda _: list(dra_node.published()) == [POOL0], timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "components=DevicePluginManager" in err and "DraDriver" in err
    assert "servedBy dra but the agent runs without --dra" not in err
    assert not (dra_node.root / "reg" / f"{DRIVER}-reg.sock").exists()
    assert not (dra_node.root / "plugins" / DRIVER / "dra.sock").exists()
    # the RBAC the deployment grants (agent-needs.yaml, dra.rbac + the agent's own) covers every call
    needs = yaml.safe_load(AGENT_NEEDS.read_text())
    granted = {(group, resource, verb) for rule in needs["dra"]["rbac"] + needs["rbac"]
               for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    used = {rbac_verb(request) for request in dra_node.api.requests}
    assert used <= granted, f"calls RBAC does not allow: {sorted(used - granted)}"
    assert {("resource.k8s.io", "resourceslices", v) for v in ("list", "create", "update", "delete")} <= used
    assert ("resource.k8s.io", "resourceclaims", "get") in used


@pytest.mark.parametrize(("extra", "expected"), [
    (["--dra", "--kubeconfig", "KUBECONFIG"], "--node-name: required with --dra"),
    (["--dra", "--node-name", "n"], "--kubeconfig: required with --dra outside a cluster"),
    (["--dra", "--node-name", "n", "--kubeconfig", "KUBECONFIG", "--dra-driver-name", "Bad_Name"],
     "--dra-driver-name Bad_Name: must be a DNS subdomain"),
])
def test_bad_dra_flags_are_one_line_each(dra_node, extra, expected, monkeypatch):
    monkeypatch.delenv("NODE_NAME", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    extra = [str(dra_node.kubeconfig) if e == "KUBECONFIG" else e for e in extra]
    proc = subprocess.run(dra_node.agent_cmd(*extra), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert all(line.startswith("sriovctl: ") for line in proc.stderr.strip().splitlines())


def test_sriovctl_claims_shows_who_holds_which_vf(dra_node):
    dra_node.start_agent()
    dra_node.kubelet.wait_for_dra(DRIVER)
    ns, uid, name = dra_node.claim([("vf", "0000-11-00-2")], [vf_config(driver="vfio-pci")], name="web")
    assert dra_node.kubelet.prepare_claims(DRIVER, [(ns, uid, name)])[uid].error == ""
    cmd = [sys.executable, "-m", "sriovkit", "claims", "--dra-state-dir", str(dra_node.state_dir)]
    table = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    assert "default/web" in table and PF0_VF2 in table and "vfio-pci (was iavf)" in table and "prepared" in table
    rows = json.loads(subprocess.run([*cmd, "-o", "json"], capture_output=True, text=True, timeout=30,
                                     check=True).stdout)
    assert [(r["claim"], r["uid"], r["pciAddress"], r["device"]) for r in rows] == [
        ("default/web", uid, PF0_VF2, "0000-11-00-2")]
    missing = subprocess.run([*cmd[:-1], str(dra_node.root / "nowhere")], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and missing.stderr.startswith("sriovctl: --dra-state-dir ")
    assert "Traceback" not in missing.stderr
