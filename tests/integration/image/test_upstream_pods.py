"""Upstream's two DaemonSets' pods, run as the container runtime would lay them out, with our image's
entrypoint: each in its own mount namespace, chrooted into a root holding only the system's /usr
(the image's Debian), this checkout (the image's /opt/sriovkit) and exactly the pod's volumes from
deploy/upstream-compat/ (each a directory of a simulated host here). The device-plugin pod gets its
args and the one environment variable that points the agent at the simulated host root; the CNI
pod gets no arguments, a read-only root and no capabilities. Then, on the "host": the kubelet
(kubesim) sees the pools, and the `sriov` binary the CNI pod installed reaches the agent through
the socket under /var/lib/kubelet/plugins/."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.kubesim import Kubelet
from sriovkit.nodepaths import UPSTREAM_CNI_SOCKET

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[3]
ENTRYPOINT = Path(sys.prefix) / "bin" / "sriovkit-entrypoint"
# what the image has besides its volumes: Debian's /usr, the interpreter and this checkout
IMAGE_DIRS = sorted({"/usr", str(Path(sys.base_prefix).resolve()), str(REPO), str(Path(sys.prefix).resolve())})


def _container(tmp: Path, name: str, volumes: dict[str, Path], argv: list[str], env: dict[str, str], *,
               read_only: bool = False, drop_caps: bool = False, host_netns: str = "") -> subprocess.Popen[bytes]:
    """A process in its own mount namespace, chrooted into a fresh root with `volumes` (container
    path -> host dir) bind-mounted, as a runtime starts a pod's container; in its own network
    namespace, or in `host_netns` (the node's, for a hostNetwork pod)."""
    root = tmp / f"{name}-root"
    root.mkdir()
    lines = ["set -e", "mount --make-rprivate /", f"mount -t tmpfs tmpfs {root}"]
    lines += [f"ln -s usr/{d} {root}/{d}" for d in ("bin", "lib", "lib64", "sbin")]
    for d in [*IMAGE_DIRS, "/proc", "/sys", "/dev"]:
        lines += [f"mkdir -p {root}{d}", f"mount --rbind {d} {root}{d}"]
    lines += [f"mount -o remount,bind,ro {root}{d}" for d in IMAGE_DIRS]
    for inside, host in volumes.items():
        lines += [f"mkdir -p {shlex.quote(f'{root}{inside}')}",
                  f"mount --bind {shlex.quote(str(host))} {shlex.quote(f'{root}{inside}')}"]
    if read_only:
        lines.append(f"mount -o remount,bind,ro {root}")
    if not host_netns:
        lines.append("ip link set lo up")  # the pod's own loopback (the agent's metrics listen there)
    caps = "setpriv --bounding-set=-all --inh-caps=-all " if drop_caps else ""
    envs = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    lines.append(f"exec chroot {root} /usr/bin/env -i PATH=/usr/bin {envs} {caps}"
                 + " ".join(shlex.quote(a) for a in [str(ENTRYPOINT), *argv]))
    where = ["ip", "netns", "exec", host_netns, "unshare", "--mount"] if host_netns else ["unshare", "--mount", "--net"]
    # to a file, not a pipe: at upstream's --log-level=10 the agent logs more than a pipe holds
    with (tmp / f"{name}.log").open("wb") as out:
        proc = subprocess.Popen([*where, "--", "sh", "-c", "\n".join(lines)], stdout=out, stderr=subprocess.STDOUT)
    proc.log = tmp / f"{name}.log"  # type: ignore[attr-defined]
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Its exit status after SIGTERM, and the end of its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode, proc.log.read_text(errors="replace")[-3000:]  # type: ignore[attr-defined]


def _wait(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _shim_call(shim: Path, socket: Path, command: str) -> tuple[dict | None, int]:
    # SRIOVKIT_AGENT_SOCKET: this test's "host" keeps the node's /var/lib/kubelet under tmp; on a
    # node the installed path and the pod's are the same file
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "upstream-compat-1", "CNI_IFNAME": "net1",
           "CNI_NETNS": "", "CNI_PATH": "/opt/cni/bin", "SRIOVKIT_AGENT_SOCKET": str(socket)}
    conf = {"cniVersion": "1.0.0", "name": "sriov-net", "type": "sriov"}
    proc = subprocess.run([str(shim)], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60)
    return (json.loads(proc.stdout) if proc.stdout.strip() else None), proc.returncode


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short path: unix socket paths (the kubelet's and the plugins' under it) stop at 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="skc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_upstreams_two_pods_with_our_image_make_a_working_node(short_tmp: Path) -> None:
    tmp_path = short_tmp
    host = tmp_path / "host"  # the node's directories the two DaemonSets mount
    kubelet_dir, cni_bin = host / "var/lib/kubelet", host / "opt/cni/bin"
    log_dir, pcidp, devinfo = host / "var/log", host / "etc/pcidp", host / "var/run/devinfo-dp"
    for d in (kubelet_dir / "device-plugins", cni_bin, log_dir, pcidp, devinfo):
        d.mkdir(parents=True)
    (pcidp / "config.json").write_text((REPO / "examples/config.json").read_text())
    sim_root = kubelet_dir / "sriovkit-sim"
    subprocess.run([sys.executable, "-m", "sriovkit.cli", "sim", "create", str(sim_root), "--spec",
                    str(REPO / "examples/sim-host.yaml")], check=True, capture_output=True, timeout=60)
    kubelet = Kubelet(kubelet_dir / "device-plugins")
    kubelet.start()
    dp = cni = None
    try:
        cni = _container(tmp_path, "cni", {"/host/opt/cni/bin": cni_bin}, [], {}, read_only=True, drop_caps=True)
        dp = _container(tmp_path, "dp", {"/var/lib/kubelet/": kubelet_dir, "/var/log": log_dir, "/etc/pcidp": pcidp,
                                         "/var/run/k8s.cni.cncf.io/devinfo/dp": devinfo},
                        ["--log-dir=sriovdp", "--log-level=10"],
                        {"SRIOVKIT_HOST_ROOT": "/var/lib/kubelet/sriovkit-sim"})

        shim = cni_bin / "sriov"
        assert _wait(lambda: shim.exists() or cni.poll() is not None), "the CNI pod installed nothing"
        assert cni.poll() is None, _stop(cni)  # it stays up, sleeping, as upstream's does
        assert shim.read_bytes()[:4] == b"\x7fELF" and f"agent_socket={UPSTREAM_CNI_SOCKET}\n".encode() in \
            shim.read_bytes()
        assert sorted(p.name for p in cni_bin.iterdir()) == ["sriov"]  # nothing else written

        devices = kubelet.wait_for_devices("intel.com/intel_sriov_netdevice", 2, timeout=60)
        assert len(devices) == 2, _stop(dp)
        assert kubelet.wait_for_devices("intel.com/intel_sriov_dpdk", 1, timeout=10)
        socket = kubelet_dir / "plugins/sriovkit/cni.sock"
        assert _wait(socket.exists), _stop(dp)
        assert (log_dir / "sriovdp" / "sriovkit-agent.log").stat().st_size > 0  # --log-dir=sriovdp, as upstream's

        # the host's binary reaches the agent in the device-plugin pod: a DEL of nothing succeeds there
        assert _shim_call(shim, socket, "DEL") == (None, 0)
    finally:
        dp_status = _stop(dp) if dp else None
        cni_status = _stop(cni) if cni else None
        kubelet.stop()
        subprocess.run([sys.executable, "-m", "sriovkit.cli", "sim", "destroy", str(sim_root)], capture_output=True,
                       timeout=60)
    assert cni_status is not None and cni_status[0] == 0, cni_status  # SIGTERM ends its sleep cleanly
    assert dp_status is not None and dp_status[0] == 0, dp_status
    # the agent gone: the same call is "try again later", naming the socket
    err, code = _shim_call(shim, kubelet_dir / "plugins/sriovkit/cni.sock", "DEL")
    assert code == 1 and err is not None and err["code"] == 11 and "cni.sock" in err["msg"]


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30).stdout


def test_a_pod_gets_its_vf_through_the_agent_in_upstreams_device_plugin_pod(short_tmp: Path) -> None:
    """ADD and DEL through the `sriov` binary the CNI pod installed, served by the agent in upstream's
    device-plugin pod, which has neither the host's /var/run/netns nor /opt/cni/bin: it reaches the
    pod's namespace, the IPAM plugin and the plugin's state through the root the binary sends."""
    suffix = os.urandom(3).hex()
    node_ns, pod_ns = f"skc-node-{suffix}", f"skc-pod-{suffix}"
    host = short_tmp / "host"
    kubelet_dir, cni_bin, pcidp = host / "var/lib/kubelet", host / "opt/cni/bin", host / "etc/pcidp"
    ipam_dir = short_tmp / "ipam"  # host-local's dataDir: on the host, where the runtime's plugins keep state
    for d in (kubelet_dir / "device-plugins", cni_bin, host / "var/log", pcidp, host / "devinfo"):
        d.mkdir(parents=True)
    (pcidp / "config.json").write_text((REPO / "examples/config.json").read_text())
    sim_root = kubelet_dir / "sriovkit-sim"
    in_node = ["ip", "netns", "exec", node_ns]
    _ip("netns", "add", node_ns)
    _ip("netns", "add", pod_ns)
    dp = cni = None
    try:
        subprocess.run([*in_node, sys.executable, "-m", "sriovkit.cli", "sim", "create", str(sim_root), "--spec",
                        str(REPO / "examples/sim-host.yaml"), "--veth"], check=True, capture_output=True, timeout=60)
        discovered = subprocess.run([sys.executable, "-m", "sriovkit.cli", "discover", "--host-root", str(sim_root),
                                     "-o", "json"], check=True, capture_output=True, timeout=60).stdout
        (pf,) = [p for p in json.loads(discovered) if p["netdevs"] == ["enp1s0f0"]]
        vf = pf["vfs"][1]  # iavf, a kernel netdev (the examples' VF 3 is vfio-pci)
        cni = _container(short_tmp, "cni", {"/host/opt/cni/bin": cni_bin}, [], {}, read_only=True, drop_caps=True)
        volumes = {"/var/lib/kubelet/": kubelet_dir, "/var/log": host / "var/log", "/etc/pcidp": pcidp,
                   "/var/run/k8s.cni.cncf.io/devinfo/dp": host / "devinfo"}
        dp = _container(short_tmp, "dp", volumes, ["--log-dir=sriovdp", "--log-level=10"],
                        {"SRIOVKIT_HOST_ROOT": "/var/lib/kubelet/sriovkit-sim"}, host_netns=node_ns)
        socket = kubelet_dir / "plugins/sriovkit/cni.sock"
        shim = cni_bin / "sriov"
        assert _wait(lambda: socket.exists() and shim.exists()), (_stop(dp), _stop(cni))
        conf = {"cniVersion": "1.0.0", "name": "sriov-net", "type": "sriov", "deviceID": vf, "vlan": 42,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.66.0.0/24"}]], "dataDir": str(ipam_dir)}}

        def call(command: str) -> tuple[bytes, int]:
            env = {"CNI_COMMAND": command, "CNI_CONTAINERID": f"c{suffix}", "CNI_NETNS": f"/var/run/netns/{pod_ns}",
                   "CNI_IFNAME": "net1", "CNI_PATH": "/usr/lib/cni", "SRIOVKIT_AGENT_SOCKET": str(socket)}
            proc = subprocess.run([*in_node, str(shim)], input=json.dumps(conf).encode(), env=env, capture_output=True,
                                  timeout=120)
            return proc.stdout, proc.returncode

        out, code = call("ADD")
        assert code == 0, (out, _stop(dp))
        result = json.loads(out)
        assert result["ips"][0]["address"].startswith("10.66.0.") and result["interfaces"][0]["name"] == "net1"
        assert "10.66.0." in _ip("-n", pod_ns, "addr", "show", "net1")  # in the pod's namespace on the host
        assert any(p.name.startswith("10.66.0.") for p in (ipam_dir / "sriov-net").iterdir())  # state on the host
        deleted = call("DEL")
        assert deleted == (b"", 0), (deleted, _stop(dp))
        assert "net1" not in _ip("-n", pod_ns, "link", "show")
        assert not any(p.name.startswith("10.66.0.") for p in (ipam_dir / "sriov-net").iterdir())
    finally:
        dp_status = _stop(dp) if dp else None
        if cni:
            _stop(cni)
        subprocess.run([*in_node, sys.executable, "-m", "sriovkit.cli", "sim", "destroy", str(sim_root)],
                       capture_output=True, timeout=60)
        for ns in (pod_ns, node_ns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
    assert dp_status is not None and dp_status[0] == 0, dp_status
