#!/usr/bin/env bash
# Builds the upstream Go components the benchmarks compare against, at pinned
# versions, with the ordinary Go client; nothing of theirs lands in this repo.
#
#   bench/peers/build.sh [deviceplugin|cni|all]    prints one line per peer:
#                                                   NAME PATH-OF-BINARY  (or NAME unavailable: WHY)
#
# Source: the Go module proxy only (`go install MODULE/cmd/X@VERSION`), like
# any dependency. When the proxy does not serve a module (it answers 403 for
# both upstream SR-IOV modules on these machines), the peer is reported as
# unavailable and the benchmarks print sriovkit's figures alone.
# Builds are cached under $SRIOVKIT_PEER_CACHE (default /var/tmp/sriovkit-peers),
# keyed by version, so a second run costs nothing.
set -uo pipefail

CACHE=${SRIOVKIT_PEER_CACHE:-/var/tmp/sriovkit-peers}

# name  module  tag  package-in-module  binary
PEERS=(
    "deviceplugin github.com/k8snetworkplumbingwg/sriov-network-device-plugin v3.6.2 cmd/sriovdp sriovdp"
    "cni github.com/k8snetworkplumbingwg/sriov-cni v2.8.1 cmd/sriov sriov"
)

log() { echo "[peers] $*" >&2; }

from_proxy() { # module tag pkg out-dir
    local module=$1 tag=$2 pkg=$3 out=$4
    GOBIN="$out" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "$module/$pkg@$tag" >>"$out/build.log" 2>&1
}

build_one() { # name module tag pkg bin
    local name=$1 module=$2 tag=$3 pkg=$4 bin=$5
    local out="$CACHE/$name-$tag"
    if [ -x "$out/$bin" ]; then
        echo "$name $out/$bin"
        return 0
    fi
    if ! command -v go >/dev/null; then
        echo "$name unavailable: no go toolchain"
        return 0
    fi
    mkdir -p "$out" && : >"$out/build.log"
    log "building $name $tag (log: $out/build.log)"
    if from_proxy "$module" "$tag" "$pkg" "$out" && [ -x "$out/$bin" ]; then
        echo "$name $out/$bin"
    else
        echo "$name unavailable: $(tail -n 1 "$out/build.log")"
    fi
}

want=${1:-all}
for p in "${PEERS[@]}"; do
    read -r name module tag pkg bin <<<"$p"
    if [ "$want" = all ] || [ "$want" = "$name" ]; then
        build_one "$name" "$module" "$tag" "$pkg" "$bin"
    fi
done
