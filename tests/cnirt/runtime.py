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
    socket: Path = STATE_DIR / "containerd.sock"

    def up(self) -> None:
        proc = subprocess.run(["bash", str(SETUP), "up"], capture_output=True, text=True,
                              timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"tests/cnirt/setup.sh up failed: {proc.stderr.strip()[-2000:]}")

    def down(self) -> None:
        subprocess.run(["bash", str(SETUP), "down"], capture_output=True, timeout=120, check=False)

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
