#!/usr/bin/env bash
# Builds the upstream Go components the benchmarks compare against, at pinned
# versions, with the ordinary Go client; nothing of theirs lands in this repo.
#
#   bench/peers/build.sh [deviceplugin|cni|gofloor|all]    prints one line per peer:
#                                                   NAME PATH-OF-BINARY  (or NAME unavailable: WHY)
#
# Source: the Go module proxy only (`go install MODULE/cmd/X@VERSION`), like
# any dependency. When the proxy does not serve a module (it answers 403 for
# both upstream SR-IOV modules on these machines), the peer is reported as
# unavailable and the benchmarks print sriovkit's figures alone.
# Builds are cached under $SRIOVKIT_PEER_CACHE (default /var/tmp/sriovkit-peers),
# keyed by version ($CACHE/NAME-TAG/BINARY), so a second run costs nothing. A version the
# proxy refused is tried again on every run: the day it serves it, the benchmarks compare.
# A binary already at that path is used as it is, whoever built it (e.g. the same tag built
# by hand from a copy of its repository on a machine whose proxy refuses the module).
#
# gofloor is ours (bench/peers/gofloor: grpc-go serving the kubelet's device-plugin
# API with a fixed Allocate answer, its dependencies pinned in its go.mod and fetched
# from the proxy): the Go floor the benchmarks print beside the Python one.
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
        echo "$name unavailable: $(why "$out/build.log")"
    fi
}

why() { # build.log: the proxy's answer (e.g. "403 Forbidden: This module version is not available.")
    local status; status=$(grep -oE '[0-9]{3} [A-Z][A-Za-z ]+$' "$1" | tail -n 1)
    local last; last=$(tail -n 1 "$1" | sed -e 's/^[[:space:]]*//' -e 's/^server response: //')
    echo "go install $module@$tag: ${status:+module proxy $status: }$last"
}

build_gofloor() {
    local src; src="$(cd "$(dirname "$0")" && pwd)/gofloor"
    local key; key=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
    local out="$CACHE/gofloor-$key"
    if [ -x "$out/gofloor" ]; then
        echo "gofloor $out/gofloor"
        return 0
    fi
    if ! command -v go >/dev/null; then
        echo "gofloor unavailable: no go toolchain"
        return 0
    fi
    mkdir -p "$out" && : >"$out/build.log"
    log "building gofloor (log: $out/build.log)"
    if (cd "$src" && GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -o "$out/gofloor" .) >>"$out/build.log" 2>&1 \
        && [ -x "$out/gofloor" ]; then
        echo "gofloor $out/gofloor"
    else
        echo "gofloor unavailable: $(tail -n 1 "$out/build.log" | sed 's/^[[:space:]]*//')"
    fi
}

want=${1:-all}
for p in "${PEERS[@]}"; do
    read -r name module tag pkg bin <<<"$p"
    if [ "$want" = all ] || [ "$want" = "$name" ]; then
        build_one "$name" "$module" "$tag" "$pkg" "$bin"
    fi
done
if [ "$want" = all ] || [ "$want" = gofloor ]; then
    build_gofloor
fi
