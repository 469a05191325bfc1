"""deploy/upstream-compat/: upstream's two DaemonSets as written out there validate, keep upstream's
shape (no command, its args, its mounts and security context) and differ only in `image:`. Running
them is tests/integration/image/test_upstream_pods.py (the pods' layout, simulated) and, on the real
node, tests/kube/."""

from __future__ import annotations

import re

import deploy_validate as validate
import pytest
from deploy_env import DEPLOY, KUBERNETES_VERSION, load_objects

COMPAT = DEPLOY / "upstream-compat"
IMAGE = re.compile(r"^sriovkit/sriovkit:")


def _pod(name: str) -> dict:
    (ds,) = [o for o in load_objects(COMPAT / name) if o["kind"] == "DaemonSet"]
    return ds["spec"]["template"]["spec"]


@pytest.mark.parametrize("path", sorted(COMPAT.glob("*.yaml")), ids=lambda p: p.name)
def test_validates(path):
    objects = load_objects(path)
    assert objects
    assert [p for i, o in enumerate(objects)
            for p in validate.object_problems(o, f"{path.name}[{i}]", KUBERNETES_VERSION)] == []


def test_device_plugin_daemonset_is_upstreams_shape():
    pod = _pod("sriovdp-daemonset.yaml")
    (c,) = pod["containers"]
    assert IMAGE.match(c["image"]) and "command" not in c and c["args"] == ["--log-dir=sriovdp", "--log-level=10"]
    assert c["securityContext"] == {"privileged": True} and pod["hostNetwork"] is True and "hostPID" not in pod
    assert "env" not in c  # nothing of ours: the agent's settings come from the entrypoint's defaults
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert sorted(mounts) == ["/etc/pcidp", "/var/lib/kubelet/", "/var/log", "/var/run/k8s.cni.cncf.io/devinfo/dp"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/var/lib/kubelet/"]]["hostPath"]["path"] == "/var/lib/kubelet/"
    assert volumes[mounts["/etc/pcidp"]]["configMap"] == {"name": "sriovdp-config",
                                                         "items": [{"key": "config.json", "path": "config.json"}]}


def test_cni_daemonset_is_upstreams_shape():
    pod = _pod("sriov-cni-daemonset.yaml")
    (c,) = pod["containers"]
    assert IMAGE.match(c["image"]) and "command" not in c and "args" not in c and "env" not in c
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]} and not sc["privileged"]
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/host/opt/cni/bin"]
    assert [v["hostPath"]["path"] for v in pod["volumes"]] == ["/opt/cni/bin"]
    assert not pod.get("hostNetwork")


def test_configmap_is_what_the_device_plugin_pod_mounts():
    (cm,) = load_objects(COMPAT / "configmap.yaml")
    assert cm["metadata"]["name"] == "sriovdp-config" and list(cm["data"]) == ["config.json"]
