"""Pod sandboxes on our own containerd, created over CRI the way the kubelet creates them.

`Containerd.up()` runs setup.sh (installs what is missing, starts containerd if it is not
running); `down()` stops it. `run_pod` makes a sandbox with the kubelet's metadata (name,
namespace, UID) so the controller finds it by the pod's UID.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc

from sriovkit.kubeapi import cri_pb2 as pb
from sriovkit.kubeapi import cri_pb2_grpc as pb_grpc

SETUP = Path(__file__).with_name("setup.sh")
STATE_DIR = Path(os.environ.get("CNIRT_STATE", "/var/tmp/sriovkit-cnirt"))
_TIMEOUT_S = 60.0


@dataclass
class Containerd:
    """One containerd of ours; `state_dir` holds everything of it (several can run side by side)."""

    state_dir: Path = STATE_DIR

    @property
    def socket(self) -> Path:
        return self.state_dir / "containerd.sock"

    @property
    def cni_bin_dir(self) -> Path:
        return self.state_dir / "cni-bin"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state_dir / "net.d"

    def _setup(self, action: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SETUP), action], capture_output=True, text=True, timeout=timeout,
                              check=False, env={**os.environ, "CNIRT_STATE": str(self.state_dir)})

    def up(self) -> None:
        proc = self._setup("up", 600)
        if proc.returncode != 0:
            raise RuntimeError(f"tests/cnirt/setup.sh up failed: {proc.stderr.strip()[-2000:]}")

    def down(self) -> None:
        self._setup("down", 120)

    def _runtime(self, channel: grpc.Channel) -> pb_grpc.RuntimeServiceStub:
        return pb_grpc.RuntimeServiceStub(channel)

    def version(self) -> str:
        """The runtime's "name version (CRI api version)", e.g. to show which runtime a test ran on."""
        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            reply = self._runtime(channel).Version(pb.VersionRequest(version="v1"), timeout=_TIMEOUT_S)
        return f"{reply.runtime_name} {reply.runtime_version} ({reply.runtime_api_version})"

    def run_pod(self, name: str, namespace: str, uid: str) -> str:
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace=namespace, uid=uid, attempt=0),
            hostname=name[:63], log_directory=f"/tmp/sriovkit-cnirt-logs/{uid}",
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                    "io.kubernetes.pod.uid": uid},
            linux=pb.LinuxPodSandboxConfig(cgroup_parent="/sriovkit-cnirt"))
        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            reply = self._runtime(channel).RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=_TIMEOUT_S)
        return str(reply.pod_sandbox_id)

    def remove_pod(self, sandbox_id: str) -> None:
        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            runtime = self._runtime(channel)
            runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=_TIMEOUT_S)
            runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=_TIMEOUT_S)

    def stop_pod(self, sandbox_id: str) -> None:
        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            self._runtime(channel).StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id),
                                                  timeout=_TIMEOUT_S)
