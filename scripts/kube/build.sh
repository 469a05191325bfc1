#!/bin/bash
# Builds the real parts of the single-node Kubernetes (`./dev kube up`) from the Go module
# proxy, through the ordinary Go client, at the versions pinned in scripts/kube/go/<part>/go.mod.
#
#   scripts/kube/build.sh PART        prints the directory holding PART's binaries
#
# PART: kubernetes | etcd | containerd | multus | whereabouts. Binaries are cached under
# $SRIOVKIT_KUBE_CACHE (default /var/tmp/sriovkit-kube) in a directory keyed by the pins
# (go.mod, packages, flags, Go version): a part is rebuilt only when its pin changes.
# The module and build caches are ours too (under the same directory), so a first run is a
# truly cold build and nothing of another Go user on the machine is touched.
# No source or binary of another project is kept in the tree: only the pins.
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
CACHE=${SRIOVKIT_KUBE_CACHE:-/var/tmp/sriovkit-kube}
log() { echo "[kube-build] $*" >&2; }

part=${1:?usage: build.sh kubernetes|etcd|containerd|multus|whereabouts}
mod="$HERE/go/$part"
[ -f "$mod/go.mod" ] || { echo "build.sh: no pins for part '$part' ($mod/go.mod)" >&2; exit 2; }
version() { awk -v m="$1" '$1 == "require" && $2 == m {print $3} $1 == m && $2 ~ /^v/ {print $2}' "$mod/go.mod" | head -1; }

# What to build for each part: packages, tags, ldflags (the version stamps upstream's own
# release builds set, so the binaries report their real version), binaries to rename (from:to,
# where Go names a binary after a path element that is not the program's name).
renames=""
case "$part" in
  kubernetes)
    v=$(version k8s.io/kubernetes); IFS=. read -r major minor _ <<<"${v#v}"
    pkgs="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
          k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl"
    tags=""
    ldflags=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags="$ldflags -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done ;;
  etcd)
    v=$(version go.etcd.io/etcd/server/v3)
    pkgs="go.etcd.io/etcd/server/v3"; tags=""; ldflags=""; renames="server:etcd" ;;
  containerd)
    v=$(version github.com/containerd/containerd/v2)
    pkgs="github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr
          github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
    tags="no_btrfs no_devmapper no_zfs no_aufs"
    ldflags="-X github.com/containerd/containerd/v2/version.Version=$v" ;;
  multus)
    v=$(version gopkg.in/k8snetworkplumbingwg/multus-cni.v4)
    pkgs="gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus"; tags=""
    ldflags="-X gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/multus.version=$v" ;;
  whereabouts)
    v=$(version github.com/k8snetworkplumbingwg/whereabouts)
    pkgs="github.com/k8snetworkplumbingwg/whereabouts/cmd"; tags=""; ldflags=""; renames="cmd:whereabouts" ;;
  *) echo "build.sh: unknown part '$part'" >&2; exit 2 ;;
esac

gov=$(go env GOVERSION)
# go.sum only records the checksums of what go.mod selects: the key is the pins, flags and Go
key=$( { cat "$mod/go.mod"; echo "$pkgs|$tags|$ldflags|$gov"; } | sha256sum | cut -c1-16)
out="$CACHE/bin/$part-$v-$key"
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi
# one build of a part at a time (other trees' copies of this script share the cache)
mkdir -p "$CACHE/bin"
exec 9>"$CACHE/bin/.$part.lock"
flock 9
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi

# Build in a copy of the pins, so filling in go.sum never writes to the tree.
work="$CACHE/work/$part-$key"
rm -rf "$work" "$out.tmp"; mkdir -p "$work" "$out.tmp"
cp "$mod/go.mod" "$work/"; [ ! -f "$mod/go.sum" ] || cp "$mod/go.sum" "$work/"
export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache" GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
log "building $part $v ($gov) into $out (log: $CACHE/logs/$part.log)"
mkdir -p "$CACHE/logs"
start=$(date +%s)
(
  cd "$work"
  go mod download
  # shellcheck disable=SC2086
  go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out.tmp/" $pkgs
) >"$CACHE/logs/$part.log" 2>&1 || { tail -30 "$CACHE/logs/$part.log" >&2; echo "build.sh: building $part $v failed" >&2; exit 1; }
for r in $renames; do mv "$out.tmp/${r%%:*}" "$out.tmp/${r#*:}"; done
cp "$work/go.sum" "$out.tmp/go.sum"
echo "$(( $(date +%s) - start ))" > "$out.tmp/.build-seconds"
rm -rf "$out"; mv "$out.tmp" "$out"; touch "$out/.complete"
log "built $part $v in $(cat "$out/.build-seconds") s"
echo "$out"
