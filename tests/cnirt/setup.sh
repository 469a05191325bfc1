#!/bin/bash
# A containerd of our own for the hot-plug tests: Debian's containerd + runc, its CRI plugin
# serving runtime.v1 on $CNIRT_STATE/containerd.sock, pod sandboxes on a plain bridge +
# host-local network (so each gets a netns), a busybox sandbox image built locally.
#
#   tests/cnirt/setup.sh up            install what is missing, start containerd if it is not running
#   tests/cnirt/setup.sh down          stop and remove our sandboxes, stop our containerd
#
# Idempotent; touches nothing of another containerd (own socket, root, state, config, CNI
# conf dir and bin dir), so one already running from an earlier step stays as it is.
# The tests talk CRI with sriovkit's own stubs (src/sriovkit/kubeapi/cri.proto): no Python package.
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
D=${CNIRT_STATE:-/var/tmp/sriovkit-cnirt}
SOCK="$D/containerd.sock"
IMG=localhost/sriovkit-pause:1
log() { echo "[cnirt] $*" >&2; }
ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }
running() { [ -S "$SOCK" ] && ctr --address "$SOCK" version >/dev/null 2>&1; }

down() {
  if running; then
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$id" >/dev/null 2>&1 || true; done
  fi
  if [ -f "$D/containerd.pid" ]; then
    pid=$(cat "$D/containerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$D/containerd.pid"
  fi
  # the sandboxes' bridge (made by the bridge plugin on the first sandbox) goes too
  ! ip link show skcnirt0 >/dev/null 2>&1 || ip link delete skcnirt0
  log "down"
}

install_packages() {
  local need=""
  for p in containerd runc busybox-static containernetworking-plugins; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
  done
  if [ -n "$need" ]; then
    log "apt-get install$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
}

write_config() {
  mkdir -p "$D/cni-bin" "$D/net.d" "$D/logs" "$D/root" "$D/state" "$D/opt"
  for p in /usr/lib/cni/*; do ln -sfn "$p" "$D/cni-bin/$(basename "$p")"; done
  cat > "$D/net.d/10-sandbox.conflist" <<CONF
{"cniVersion": "1.0.0", "name": "sriovkit-cnirt", "plugins": [
  {"type": "bridge", "bridge": "skcnirt0", "isGateway": false, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.213.0.0/24"}]], "dataDir": "$D/ipam"}}]}
CONF
  cat > "$D/config.toml.new" <<CONF
version = 2
root = "$D/root"
state = "$D/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$D/containerd.sock.ttrpc"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$IMG"
    # no CAP_SYS_RESOURCE in this machine's sandbox: runc cannot lower the pause's oom_score_adj
    restrict_oom_score_adj = true
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$D/cni-bin"
      conf_dir = "$D/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
  [plugins."io.containerd.internal.v1.opt"]
    path = "$D/opt"
CONF
  if ! cmp -s "$D/config.toml.new" "$D/config.toml"; then
    mv "$D/config.toml.new" "$D/config.toml"
    if running; then log "config changed: restarting containerd"; down; fi
  else
    rm -f "$D/config.toml.new"
  fi
}

start() {
  running && return 0
  down >/dev/null 2>&1 || true
  rm -f "$SOCK"
  log "starting containerd on $SOCK"
  setsid containerd --config "$D/config.toml" >"$D/logs/containerd.log" 2>&1 </dev/null &
  echo $! > "$D/containerd.pid"
  for _ in $(seq 150); do running && break; sleep 0.1; done
  running || { tail -20 "$D/logs/containerd.log" >&2; echo "containerd did not start" >&2; exit 1; }
}

image() {
  ctr_ images ls -q | grep -qx "$IMG" && return 0
  log "building and importing $IMG"
  python3 "$HERE/mkimage.py" "$D/pause.tar" "$IMG"
  ctr_ images import "$D/pause.tar" >/dev/null
}

case "${1:-up}" in
  up) mkdir -p "$D"; install_packages; write_config; start; image; log "ready: $SOCK" ;;
  down) down ;;
  *) echo "usage: $0 up | down" >&2; exit 2 ;;
esac
