"""A real single-node Kubernetes on this machine, with sriovkit deployed on it from its image.

    python -m tests.kube.cluster up [--state DIR]     (./dev kube up)
    python -m tests.kube.cluster down [--state DIR]   (./dev kube down)

Parts, all real, built by scripts/kube/build.sh from the Go module proxy at pinned versions:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl, containerd 2
(with Debian's runc), Multus (thin plugin) as the node's CNI with a bridge + host-local cluster
network, whereabouts. The sriovkit image is built from deploy/Dockerfile (scripts/kube/image.sh)
and installed with the Helm chart from deploy/ (rendered by tests/deploy/helm_render.py), its
only non-default values being the simulated SR-IOV host (`sriovctl sim create --veth`) given as
the agent's host root, a free metrics port, and the API server's address (no kube-proxy here).

Everything of one cluster lives under its state directory. The kubelet and containerd run in a
mount namespace of ours, where the node's standard paths (/var/lib/kubelet, /etc/cni/net.d,
/opt/cni/bin, /run/containerd, /var/lib/cni, /run/netns, ...) are bind mounts of directories
under the state directory: the chart's default host paths are used unchanged, and nothing of
another containerd, CNI or kubelet test on this machine is touched. Servers listen on loopback
ports chosen free at start. `down` stops every process by PID (checked against what it runs),
kills the pods' processes through their cgroups, removes the mount namespace, the interfaces,
the cgroups and the files; it is idempotent and works from whatever a crashed `up` left.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.endpoints import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "kube"
CACHE = Path(os.environ.get("SRIOVKIT_KUBE_CACHE", "/var/tmp/sriovkit-kube"))
DEFAULT_STATE = CACHE / "dev"
NAMESPACE = "kube-system"
RELEASE = "sriovkit"
RESOURCE = "intel.com/intel_sriov_netdevice"
PAUSE_IMAGE = "localhost/sriovkit-kube-pause:1"
NODE_PARTS = ("kubernetes", "etcd", "containerd", "multus", "whereabouts")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "static", "portmap", "tuning")
APT_PACKAGES = ("runc", "containernetworking-plugins", "busybox-static", "openssl", "util-linux", "iproute2")
# the node's standard paths, each a bind mount of <state>/node/<name> in our mount namespace
NODE_MOUNTS = {
    "/var/lib/kubelet": "var-lib-kubelet",
    "/var/lib/containerd": "var-lib-containerd",
    "/run/containerd": "run-containerd",
    "/var/lib/cni": "var-lib-cni",
    "/etc/cni/net.d": "etc-cni-net.d",
    "/opt/cni/bin": "opt-cni-bin",
    "/run/netns": "run-netns",
    "/run/cni": "run-cni",
    "/run/sriovkit": "run-sriovkit",
    "/run/k8s.cni.cncf.io": "run-k8s.cni.cncf.io",
    "/run/cdi": "run-cdi",
    "/etc/cdi": "etc-cdi",
    "/run/nri": "run-nri",
    "/var/log/pods": "var-log-pods",
    "/var/log/containers": "var-log-containers",
    "/var/lib/sriovkit": "var-lib-sriovkit",
}
DAEMONS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet")


class ClusterError(RuntimeError):
    """The cluster could not be brought up (the message says which part and shows its log)."""


class CannotBuildHere(ClusterError):
    """This machine cannot build the node's upstream parts (no Go toolchain, no root, the Go module
    proxy unreachable, a part's build failing): the node does not exist here, which is not a failure
    of ours. Our own parts (the image from deploy/Dockerfile, the chart, the bring-up) never raise it."""


def cannot_build_here() -> str | None:
    """Why the node cannot be built on this machine (None: it can be tried)."""
    if os.geteuid() != 0:
        return "needs root (a kubelet, containerd, network namespaces, mounts)"
    if shutil.which("go") is None:
        return "no Go toolchain on PATH (scripts/kube/build.sh builds Kubernetes with it)"
    for tool in ("unshare", "nsenter", "mount", "ip"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem at /sys/fs/cgroup (the kubelet needs one)"
    return None


def log(message: str) -> None:
    print(f"[kube] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, check: bool = True, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd[:3])}... failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-3000:]}")
    return proc


@dataclass
class Cluster:
    """One cluster, everything under `state`; `info` (cluster.json) records names and ports."""

    state: Path = DEFAULT_STATE

    def __post_init__(self) -> None:
        self.state = Path(self.state).resolve()
        self.id = hashlib.sha256(str(self.state).encode()).hexdigest()[:4]

    # -- names and paths ---------------------------------------------------------------------
    @property
    def node_name(self) -> str:
        return f"sriovkit-{self.id}"

    @property
    def bridge(self) -> str:
        return f"skkube{self.id}"

    @property
    def pod_subnet(self) -> str:
        return f"10.{200 + int(self.id, 16) % 50}.{int(self.id, 16) % 250}.0/24"

    @property
    def cgroup_root(self) -> str:
        return f"/sriovkit-kube-{self.id}"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def sim_root(self) -> Path:
        return self.state / "simhost"

    @property
    def mntns(self) -> Path:
        return self.state / "mntns"

    def node_path(self, standard: str) -> Path:
        """Where a standard node path (e.g. /var/lib/kubelet) is, seen from outside our namespace."""
        for path, name in NODE_MOUNTS.items():
            if standard == path or standard.startswith(path + "/"):
                return self.state / "node" / name / standard[len(path):].lstrip("/")
        raise KeyError(standard)

    @property
    def containerd_socket(self) -> Path:
        return self.node_path("/run/containerd/containerd.sock")

    @property
    def pod_resources_socket(self) -> Path:
        return self.node_path("/var/lib/kubelet/pod-resources/kubelet.sock")

    @property
    def info(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.state / "cluster.json").read_text()))
        except (OSError, ValueError):
            return {}

    def pf_names(self) -> list[str]:
        return [f"sk{self.id}p{n}" for n in range(2)]

    def bin(self, name: str) -> str:
        for part in NODE_PARTS:
            path = Path(self.info.get("bins", {}).get(part, "/nonexistent")) / name
            if path.exists():
                return str(path)
        raise ClusterError(f"no binary {name} built (run up)")

    # -- up ----------------------------------------------------------------------------------
    def up(self) -> None:
        if self.healthy():
            log(f"already up: {self.kubeconfig}")
            return
        self.down(quiet=True)
        started = time.monotonic()
        # the image (mostly downloads and copying) builds while Go builds use the CPUs
        image_build = subprocess.Popen(["bash", str(SCRIPTS / "image.sh")], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
        try:
            bins = self._build()
        finally:
            out, err = image_build.communicate(timeout=3600)
        if image_build.returncode != 0:
            raise ClusterError(f"scripts/kube/image.sh failed: {err[-3000:]}")
        image = out.strip().splitlines()[-1]
        self.state.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {
            "bins": bins, "image_archive": image, "node": self.node_name,
            "ports": {name: free_port() for name in ("etcd", "etcd_peer", "apiserver", "kubelet", "metrics")},
        }
        (self.state / "cluster.json").write_text(json.dumps(info, indent=1))
        try:
            self._pki()
            self._start_control_plane()
            self._mount_namespace()
            self._start_containerd()
            self._import_images()
            self._cni_config()
            self._start_kubelet()
            self._simulated_host()
            self._install_sriovkit()
        except BaseException:
            log(f"up failed; logs in {self.state / 'logs'}")
            raise
        info["up_seconds"] = round(time.monotonic() - started, 1)
        (self.state / "cluster.json").write_text(json.dumps(info, indent=1))
        log(f"up in {info['up_seconds']} s")

    def healthy(self) -> bool:
        if not self.kubeconfig.exists() or not all(self._alive(d) for d in DAEMONS):
            return False
        proc = run([self.bin("kubectl"), "--kubeconfig", str(self.kubeconfig), "get", "--raw", "/readyz"],
                   check=False, timeout=20)
        return proc.returncode == 0

    def _build(self) -> dict[str, str]:
        bins = {}
        for part in NODE_PARTS:
            proc = run(["bash", str(SCRIPTS / "build.sh"), part], timeout=5400, check=False)
            if proc.returncode != 0:  # upstream's code through the Go module proxy: not ours to fail on
                raise CannotBuildHere(f"scripts/kube/build.sh {part} failed ({proc.returncode}): "
                                      f"{proc.stderr.strip()[-1500:]}")
            bins[part] = proc.stdout.strip().splitlines()[-1]
        self._apt()
        return bins

    @staticmethod
    def _apt() -> None:
        need = [p for p in APT_PACKAGES if run(["dpkg", "-s", p], check=False).returncode != 0]
        if need:
            log(f"apt-get install {' '.join(need)}")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            run(["apt-get", "update", "-qq"], env=env)
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], env=env)

    def _pki(self) -> None:
        pki = self.state / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ssl = ["openssl"]
        run([*ssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / "ca.key"),
             "-out", str(pki / "ca.crt"), "-days", "3650", "-subj", "/CN=sriovkit-kube-ca"])
        run([*ssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(pki / "apiserver.key"),
             "-out", str(pki / "apiserver.csr"), "-subj", "/CN=kube-apiserver"])
        (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
                                     "DNS:kubernetes.default,DNS:kubernetes.default.svc\n")
        run([*ssl, "x509", "-req", "-in", str(pki / "apiserver.csr"), "-CA", str(pki / "ca.crt"),
             "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650", "-extfile", str(pki / "san.ext"),
             "-out", str(pki / "apiserver.crt")])
        run([*ssl, "genrsa", "-out", str(pki / "sa.key"), "2048"])
        run([*ssl, "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])
        users = {"admin": ("admin", "system:masters"), "kubelet": (f"system:node:{self.node_name}", "system:nodes"),
                 "controller-manager": ("system:kube-controller-manager", ""),
                 "scheduler": ("system:kube-scheduler", ""), "multus": ("sriovkit-kube:multus", ""),
                 "whereabouts": ("sriovkit-kube:whereabouts", "")}
        lines = []
        for name, (user, group) in users.items():
            token = secrets.token_hex(16)
            lines.append(f'{token},{user},{name},"{group}"' if group else f"{token},{user},{name}")
            path = self.kubeconfig if name == "admin" else pki / f"{name}.kubeconfig"
            path.write_text(self._kubeconfig_text(token))
            path.chmod(0o600)
        (pki / "tokens.csv").write_text("\n".join(lines) + "\n")

    def _kubeconfig_text(self, token: str) -> str:
        server = f"https://127.0.0.1:{self.info['ports']['apiserver']}"
        # the CA inline: a plugin in a container (whereabouts, run by the agent) has no state dir
        ca = base64.b64encode((self.state / "pki" / "ca.crt").read_bytes()).decode()
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "sriovkit-kube",
            "clusters": [{"name": "sriovkit-kube", "cluster": {"server": server, "certificate-authority-data": ca}}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "sriovkit-kube", "context": {"cluster": "sriovkit-kube", "user": "user"}}],
        }, indent=1)

    # -- processes -----------------------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.state / "pids" / f"{name}.pid"

    def _start(self, name: str, cmd: list[str], *, in_namespace: bool = False,
               env: dict[str, str] | None = None) -> int:
        (self.state / "pids").mkdir(parents=True, exist_ok=True)
        (self.state / "logs").mkdir(parents=True, exist_ok=True)
        if in_namespace:
            cmd = ["nsenter", f"--mount={self.mntns}", "--", *cmd]  # nsenter execs: the PID is the daemon's
        logf = open(self.state / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})
        logf.close()
        self._pidfile(name).write_text(f"{proc.pid}\n")
        (self.state / "pids" / f"{name}.exe").write_text(os.path.basename(cmd[3] if in_namespace else cmd[0]))
        return proc.pid

    def _pid(self, name: str) -> int | None:
        try:
            pid = int(self._pidfile(name).read_text().split()[0])
            exe = (self.state / "pids" / f"{name}.exe").read_text().strip()
        except (OSError, ValueError, IndexError):
            return None
        try:
            # the PID is ours only while it still runs what we started (PIDs get reused)
            # (nsenter for the moment before it execs the daemon in our mount namespace)
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")).split(" ")[0] not in (exe, "nsenter"):
                return None
        except OSError:
            return None
        return pid

    def _alive(self, name: str) -> bool:
        return self._pid(name) is not None

    def stop(self, name: str, timeout: float = 20) -> None:
        pid = self._pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._pid(name) is not None:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                if self._pid(name) is not None:
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        self._pidfile(name).unlink(missing_ok=True)

    def _wait(self, what: str, check: Any, *, timeout: float, logname: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(logname):
                break
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.5)
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join((self.state / "logs" / f"{logname}.log").read_text(errors="replace").splitlines()[-25:])
        state = "exited" if not self._alive(logname) else f"not ready after {timeout:.0f} s"
        raise ClusterError(f"{what}: {logname} {state}; last lines of its log:\n{tail}")

    # -- control plane -----------------------------------------------------------------------------
    def _start_control_plane(self) -> None:
        ports, pki = self.info["ports"], self.state / "pki"
        etcd_url, peer_url = f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd_peer']}"
        self._start("etcd", [self.bin("etcd"), "--name", "default", "--data-dir", str(self.state / "etcd"),
                             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", f"default={peer_url}", "--unsafe-no-fsync", "--log-level", "warn"])
        self._wait("etcd", lambda: _http_ok(f"{etcd_url}/health"), timeout=60, logname="etcd")
        self._start("kube-apiserver", [
            self.bin("kube-apiserver"), f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}", "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none", f"--cert-dir={self.state / 'apiserver'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true", "--profiling=false", "--v=1"])
        self._wait("kube-apiserver", lambda: self.kubectl("get", "--raw", "/readyz", timeout=10).returncode == 0,
                   timeout=180, logname="kube-apiserver")
        self._start("kube-controller-manager", [
            self.bin("kube-controller-manager"), f"--kubeconfig={pki / 'controller-manager.kubeconfig'}",
            "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--v=1"])
        self._start("kube-scheduler", [
            self.bin("kube-scheduler"), f"--kubeconfig={pki / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={pki / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={pki / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--v=1"])
        self.kubectl_apply((Path(__file__).with_name("manifests") / "cluster.yaml").read_text())
        for crd in ("ippools", "overlappingrangeipreservations"):
            crds = whereabouts_module() / "doc" / "crds"
            self.kubectl_apply((crds / f"whereabouts.cni.cncf.io_{crd}.yaml").read_text())

    def kubectl(self, *args: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run([self.bin("kubectl"), "--kubeconfig", str(self.kubeconfig), *args], check=False,
                   timeout=timeout, input=stdin)

    def kubectl_apply(self, text: str) -> None:
        proc = self.kubectl("apply", "-f", "-", stdin=text, timeout=120)
        if proc.returncode != 0:
            raise ClusterError(f"kubectl apply failed: {proc.stderr.strip()}")

    # -- node ------------------------------------------------------------------------------------
    def _mount_namespace(self) -> None:
        created = []
        for path, name in NODE_MOUNTS.items():
            (self.state / "node" / name).mkdir(parents=True, exist_ok=True)
            missing = [str(p) for p in (Path(path), *Path(path).parents) if not p.exists()]
            os.makedirs(path, exist_ok=True)
            created.extend(missing)  # deepest first: the order they can be removed in
        # the mount points this cluster had to create on the host (removed at down if still empty)
        (self.state / "created-dirs.json").write_text(json.dumps(created))
        self.mntns.touch()
        run(["unshare", f"--mount={self.mntns}", "--propagation", "private", "true"])
        binds = " && ".join(f"mount --bind {self.state / 'node' / name} {path}" for path, name in NODE_MOUNTS.items())
        # shared inside the namespace (never towards the host's, which stays private): what the
        # kubelet mounts (pods' netns, volumes) reaches the containers (HostToContainer)
        run(["nsenter", f"--mount={self.mntns}", "--", "sh", "-ec", f"{binds} && mount --make-rshared /"])

    def _start_containerd(self) -> None:
        bin_dir = self.info["bins"]["containerd"]
        config = self.state / "containerd.toml"
        config.write_text(CONTAINERD_CONFIG.format(pause=PAUSE_IMAGE, cgroup=self.cgroup_root))
        self._start("containerd", [str(Path(bin_dir) / "containerd"), "--config", str(config)], in_namespace=True,
                    env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
        self._wait("containerd", lambda: self.ctr("version").returncode == 0, timeout=60, logname="containerd")

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([self.bin("ctr"), "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
                   check=False, timeout=timeout)

    def _import_images(self) -> None:
        pause = self.state / "pause.tar"
        run([sys.executable, str(REPO / "tests" / "cnirt" / "mkimage.py"), str(pause), PAUSE_IMAGE])
        for archive in (pause, Path(self.info["image_archive"])):
            proc = self.ctr("images", "import", str(archive))
            if proc.returncode != 0:
                raise ClusterError(f"ctr images import {archive}: {proc.stderr.strip()}")
        pause.unlink()

    def _cni_config(self) -> None:
        bin_dir = self.node_path("/opt/cni/bin")
        for plugin in CNI_PLUGINS:
            shutil.copy2(f"/usr/lib/cni/{plugin}", bin_dir / plugin)  # real files: containers see them too
        shutil.copy2(Path(self.info["bins"]["multus"]) / "multus", bin_dir / "multus")
        shutil.copy2(Path(self.info["bins"]["whereabouts"]) / "whereabouts", bin_dir / "whereabouts")
        conf = self.node_path("/etc/cni/net.d")
        (conf / "multus.d").mkdir(exist_ok=True)
        shutil.copy2(self.state / "pki" / "multus.kubeconfig", conf / "multus.d" / "multus.kubeconfig")
        cluster_net = {"cniVersion": "1.0.0", "name": "cluster", "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_subnet}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        (conf / "multus.d" / "cluster.conflist").write_text(json.dumps(cluster_net, indent=1))
        # clusterNetwork names the directory, not the .conflist: Multus 4.2.3 loads a conflist given by
        # its path into its typed NetConfList and caches that re-marshalled (every plugin field but
        # type, capabilities and ipam.type lost) as what its DEL runs, so host-local's DEL failed
        # "no IP ranges specified" and the pod's address leaked; from a directory it keeps the file's bytes
        multus = {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
                  "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
                  "clusterNetwork": "/etc/cni/net.d/multus.d",
                  "cniDir": "/var/lib/cni/multus", "binDir": "/opt/cni/bin",
                  "logFile": "/var/log/pods/multus.log", "logLevel": "verbose"}
        (conf / "00-multus.conf").write_text(json.dumps(multus, indent=1))
        # where whereabouts looks for its own configuration (its kubeconfig)
        (conf / "whereabouts.d").mkdir(exist_ok=True)
        wconf = conf / "whereabouts.d"
        shutil.copy2(self.state / "pki" / "whereabouts.kubeconfig", wconf / "whereabouts.kubeconfig")
        (wconf / "whereabouts.conf").write_text(json.dumps({"datastore": "kubernetes", "kubernetes": {
            "kubeconfig": "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"}}))

    def _start_kubelet(self) -> None:
        self._make_cgroup_root()
        config = self.state / "kubelet.yaml"
        config.write_text(json.dumps(kubelet_config(self.info["ports"]["kubelet"], self.cgroup_root), indent=1))
        self.start_kubelet()
        self.wait_node_ready(timeout=180)

    def start_kubelet(self) -> int:
        return self._start("kubelet", [self.bin("kubelet"), f"--config={self.state / 'kubelet.yaml'}",
                                       f"--kubeconfig={self.state / 'pki' / 'kubelet.kubeconfig'}",
                                       f"--hostname-override={self.node_name}", "--v=2"], in_namespace=True)

    def restart_kubelet(self, while_down: Callable[[], object] | None = None) -> float:
        """Stops the kubelet and starts it again (calling `while_down` in between); returns the
        monotonic time it was started at."""
        self.stop("kubelet")
        if while_down is not None:
            while_down()
        started = time.monotonic()
        self.start_kubelet()
        return started

    def log_lines(self, name: str) -> list[str]:
        return _read(self.state / "logs" / f"{name}.log").splitlines()

    def wait_node_ready(self, timeout: float) -> None:
        def ready() -> bool:
            node = json.loads(self.kubectl("get", "node", self.node_name, "-o", "json").stdout)
            return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
        self._wait("node Ready", ready, timeout=timeout, logname="kubelet")

    def _simulated_host(self) -> None:
        spec = self.state / "simhost.json"
        pfs = [{"name": self.pf_names()[0], "numVfs": 4, "unsupportedVfSettings": ["minTxRate"]},
               {"name": self.pf_names()[1], "numVfs": 0, "totalVfs": 8}]
        spec.write_text(json.dumps({"pfs": pfs}))
        run([sriovctl(), "sim", "create", "--veth", str(self.sim_root), "--spec", str(spec)])

    def chart_values(self) -> dict[str, Any]:
        """The values the test installs the chart with: nothing but what this node differs in."""
        return {
            "hostPaths": {"root": str(self.sim_root)},
            "agent": {"hostRoot": str(self.sim_root), "metricsPort": self.info["ports"]["metrics"],
                      # no kube-proxy on this node: in-cluster clients reach the API server directly
                      "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                              {"name": "KUBERNETES_SERVICE_PORT", "value": str(self.info["ports"]["apiserver"])}]},
        }

    def render_chart(self, extra: dict[str, Any] | None = None) -> str:
        values = self.state / "values.yaml"
        merged = self.chart_values()
        for key, value in (extra or {}).items():
            merged.setdefault(key, {}).update(value) if isinstance(value, dict) else merged.update({key: value})
        values.write_text(json.dumps(merged, indent=1))
        proc = run([sys.executable, str(REPO / "tests" / "deploy" / "helm_render.py"), str(REPO / "deploy" / "helm"
                    / "sriovkit"), "-n", NAMESPACE, "--release", RELEASE, "-f", str(values)])
        return proc.stdout

    def _install_sriovkit(self) -> None:
        self.install_sriovkit()
        self.wait_allocatable(RESOURCE, 4, timeout=240)

    def install_sriovkit(self, extra: dict[str, Any] | None = None) -> None:
        """Applies the chart rendered with this node's values and `extra` ones (e.g. hot-plug on)."""
        self.kubectl_apply(self.render_chart(extra))

    def allocatable(self) -> dict[str, str]:
        node = json.loads(self.kubectl("get", "node", self.node_name, "-o", "json").stdout)
        return dict(node["status"]["allocatable"])

    def wait_allocatable(self, resource: str, count: int, *, timeout: float) -> None:
        self._wait(f"{resource}={count} on the node", lambda: self.allocatable().get(resource) == str(count),
                   timeout=timeout, logname="kubelet")

    # -- down ------------------------------------------------------------------------------------
    def down(self, *, quiet: bool = False) -> None:
        if not self.state.exists():
            if not quiet:
                log("down (nothing there)")
            return
        self.stop("kubelet")
        self._kill_pods()
        self.stop("containerd")
        self._kill_namespace_processes()
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self.stop(name)
        if self.mntns.exists():
            run(["umount", str(self.mntns)], check=False)
        self._remove_cgroups()
        if self.sim_root.exists():
            run([sriovctl(), "sim", "destroy", str(self.sim_root)], check=False)
        if Path(f"/sys/class/net/{self.bridge}").exists():
            run(["ip", "link", "delete", self.bridge], check=False)
        self._remove_created_dirs()
        leftover = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                    if line.split()[4].startswith(str(self.state) + "/") or line.split()[4] == str(self.state)]
        if leftover:
            raise ClusterError(f"not removing {self.state}: still mounted: {leftover}")
        self._keep_logs()
        shutil.rmtree(self.state, ignore_errors=True)
        if not quiet:
            log(f"down: removed {self.state}")

    def _make_cgroup_root(self) -> None:
        """The kubelet's --cgroup-root must exist in every hierarchy (cgroup v1 here)."""
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if hierarchy.is_symlink() or not (hierarchy / "cgroup.procs").exists():
                continue
            root = hierarchy / self.cgroup_root.lstrip("/")
            root.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset is empty until given its parent's
                if (root / name).exists() and not _read(root / name).strip():
                    (root / name).write_text(_read(hierarchy / name))

    def _keep_logs(self) -> None:
        """The daemons' and pods' logs outlive the cluster (the last of each state name is kept)."""
        kept = CACHE / "last-logs" / self.state.name.split("-")[0]  # test-<pid>: one "test" copy
        shutil.rmtree(kept, ignore_errors=True)
        for source, name in ((self.state / "logs", "daemons"), (self.state / "node" / "var-log-pods", "pods")):
            if source.is_dir():
                shutil.copytree(source, kept / name, symlinks=True, ignore_dangling_symlinks=True)

    def _cgroup_dirs(self) -> list[Path]:
        return [d for d in Path("/sys/fs/cgroup").glob(f"*{self.cgroup_root}") if d.is_dir()]

    def _kill_pods(self) -> None:
        """Every process in the pods' cgroups (kubelet already stopped: nothing restarts them)."""
        for _ in range(50):
            pids = {int(p) for d in self._cgroup_dirs() for f in d.rglob("cgroup.procs")
                    for p in _read(f).split()}
            pids.discard(os.getpid())
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def _kill_namespace_processes(self) -> None:
        """What is left in our mount namespace (containerd's shims, a CNI plugin mid-call)."""
        try:
            ns = os.stat(self.mntns).st_ino
        except OSError:
            return
        if ns == os.stat("/proc/self/ns/mnt").st_ino:
            return  # not a namespace (a crash before unshare): it holds nothing
        for _ in range(50):
            pids = []
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        if os.stat(entry / "ns" / "mnt").st_ino == ns:
                            pids.append(int(entry.name))
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def _remove_cgroups(self) -> None:
        for top in self._cgroup_dirs():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    def _remove_created_dirs(self) -> None:
        try:
            created = json.loads((self.state / "created-dirs.json").read_text())
        except (OSError, ValueError):
            return
        others = [p for p in CACHE.glob("*/mntns") if p.parent != self.state]
        if others:
            return  # another cluster's namespace may mount on them: they stay until the last goes
        for path in created:
            with contextlib.suppress(OSError):
                os.rmdir(path)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as reply:
        return bool(reply.status == 200)


def whereabouts_module() -> Path:
    """The whereabouts module as scripts/kube/build.sh fetched it (its CRDs are in doc/crds)."""
    gomod = (SCRIPTS / "go" / "whereabouts" / "go.mod").read_text()
    pin = gomod.split("require github.com/k8snetworkplumbingwg/whereabouts ")[1]
    return CACHE / "gomod" / "github.com" / "k8snetworkplumbingwg" / f"whereabouts@{pin.split()[0]}"


def sriovctl() -> str:
    return str(Path(sys.executable).with_name("sriovctl"))


def kubelet_config(port: int, cgroup_root: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": "127.0.0.1", "port": port, "readOnlyPort": 0, "healthzPort": 0,
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs", "cgroupRoot": cgroup_root, "cgroupsPerQOS": True,
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "failSwapOn": False, "oomScoreAdj": 0, "protectKernelDefaults": False,
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False, "registerNode": True, "resolvConf": "/etc/resolv.conf",
        "syncFrequency": "10s", "nodeStatusUpdateFrequency": "4s", "fileCheckFrequency": "10s",
        "enforceNodeAllocatable": ["pods"], "localStorageCapacityIsolation": True,
    }


CONTAINERD_CONFIG = """\
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"
[plugins."io.containerd.cri.v1.runtime"]
  enable_cdi = true
  cdi_spec_dirs = ["/etc/cdi", "/run/cdi"]
  # no CAP_SYS_RESOURCE on these machines: runc cannot lower a container's oom_score_adj
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "/run/nri/nri.sock"
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev kube", description="a real single-node Kubernetes with sriovkit")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("SRIOVKIT_KUBE_STATE", DEFAULT_STATE)),
                        help=f"the cluster's directory (default {DEFAULT_STATE})")
    args = parser.parse_args(argv)
    cluster = Cluster(args.state)
    try:
        if args.action == "up":
            cluster.up()
            print(f"kubeconfig: {cluster.kubeconfig}")
            print(f"try:        {cluster.bin('kubectl')} --kubeconfig {cluster.kubeconfig} get node "
                  f"{cluster.node_name} -o jsonpath='{{.status.allocatable}}'")
        elif args.action == "down":
            cluster.down()
        else:
            print("up" if cluster.healthy() else "down")
    except ClusterError as exc:
        print(f"./dev kube {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
