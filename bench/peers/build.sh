#!/usr/bin/env bash
# Builds the upstream Go components the benchmarks compare against, at pinned
# versions, with the ordinary Go client; nothing of theirs lands in this repo.
#
#   bench/peers/build.sh [deviceplugin|cni|all]    prints one line per peer:
#                                                   NAME PATH-OF-BINARY  (or NAME unavailable: WHY)
#
# Sources, in order:
#   1. the Go module proxy (`go install MODULE/cmd/X@VERSION`);
#   2. a local git snapshot of the upstream repository, if one is present
#      (SRIOVKIT_PEER_GIT_DIR/<owner>+<name>/repo, default /work/.mirror),
#      checked out at the pinned tag and verified against the pinned commit,
#      built with its own go.mod/go.sum (and vendor/ where it ships one).
# Builds are cached under $SRIOVKIT_PEER_CACHE (default /var/tmp/sriovkit-peers),
# keyed by version, so a second run costs nothing.
set -uo pipefail

CACHE=${SRIOVKIT_PEER_CACHE:-/var/tmp/sriovkit-peers}
GIT_DIRS=${SRIOVKIT_PEER_GIT_DIR:-/work/.mirror}

# name  module  tag  commit  package-in-module  binary
PEERS=(
    "deviceplugin github.com/k8snetworkplumbingwg/sriov-network-device-plugin v3.6.2 30652a258b292bd81b7efa6890461adf79654c52 cmd/sriovdp sriovdp"
    "cni github.com/k8snetworkplumbingwg/sriov-cni v2.8.1 fca6591297c0e52b6522573bd367ccb7d6551fd0 cmd/sriov sriov"
)

log() { echo "[peers] $*" >&2; }

from_proxy() { # module tag pkg out-dir
    local module=$1 tag=$2 pkg=$3 out=$4
    GOBIN="$out" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "$module/$pkg@$tag" >>"$out/build.log" 2>&1
}

from_snapshot() { # module tag commit pkg bin out-dir
    local module=$1 tag=$2 commit=$3 pkg=$4 bin=$5 out=$6
    local repo=${module#github.com/} gd
    gd="$GIT_DIRS/${repo/\//+}/repo"
    [ -d "$gd/.git" ] && gd="$gd/.git"
    if ! git --git-dir="$gd" rev-parse -q --verify "$tag^{commit}" >/dev/null 2>&1; then
        echo "no snapshot of $repo with tag $tag under $GIT_DIRS" >>"$out/build.log"
        return 1
    fi
    local got
    got=$(git --git-dir="$gd" rev-parse "$tag^{commit}")
    if [ "$got" != "$commit" ]; then
        echo "tag $tag of $repo is $got, pinned $commit: refusing" >>"$out/build.log"
        return 1
    fi
    local src="$out/src"
    rm -rf "$src" && mkdir -p "$src"
    git --git-dir="$gd" archive "$commit" | tar -x -C "$src" || return 1
    local mod=mod
    [ -d "$src/vendor" ] && mod=vendor
    (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=$mod -buildvcs=false" \
        go build -trimpath -o "$out/$bin" "./$pkg") >>"$out/build.log" 2>&1
}

build_one() { # name module tag commit pkg bin
    local name=$1 module=$2 tag=$3 commit=$4 pkg=$5 bin=$6
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
    elif from_snapshot "$module" "$tag" "$commit" "$pkg" "$bin" "$out" && [ -x "$out/$bin" ]; then
        rm -rf "$out/src"
        echo "$name $out/$bin"
    else
        rm -rf "$out/src"
        echo "$name unavailable: $(tail -n 1 "$out/build.log")"
    fi
}

want=${1:-all}
for p in "${PEERS[@]}"; do
    read -r name module tag commit pkg bin <<<"$p"
    if [ "$want" = all ] || [ "$want" = "$name" ]; then
        build_one "$name" "$module" "$tag" "$commit" "$pkg" "$bin"
    fi
done
