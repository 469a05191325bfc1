#!/bin/bash
# Builds the sriovkit image from deploy/Dockerfile itself, with no registry and no Docker engine:
# Debian's buildah, and the Dockerfile's base image (FROM debian:bookworm-slim) made locally from
# Debian's packages with mmdebstrap and tagged under that name, so `buildah bud --pull=never`
# runs the Dockerfile unchanged.
#
#   scripts/kube/image.sh             prints the path of a docker-archive of the image
#
# Cached under $SRIOVKIT_KUBE_CACHE/image (default /var/tmp/sriovkit-kube): the base image is
# kept once made; the sriovkit image is rebuilt when the build context (deploy/Dockerfile, its
# .dockerignore, and the files it lets in) changes. buildah's storage is ours (own root/runroot).
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${SRIOVKIT_KUBE_CACHE:-/var/tmp/sriovkit-kube}
D="$CACHE/image"
log() { echo "[kube-image] $*" >&2; }

need=""
for p in buildah mmdebstrap runc; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  log "apt-get install$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
mkdir -p "$D"
# one build at a time in this cache (other trees' copies of this script share it)
exec 9>"$D/.lock"
flock 9
bah() { buildah --root "$D/storage" --runroot "$D/run" --storage-driver vfs "$@"; }

dockerfile="$REPO/deploy/Dockerfile"
base=$(awk 'toupper($1) == "FROM" {print $2; exit}' "$dockerfile")
grep -iE '^FROM ' "$dockerfile" | awk '{print $2}' | sort -u | grep -qvx "$base" \
  && { echo "image.sh: deploy/Dockerfile uses more than one base image; only $base is made here" >&2; exit 1; }
name=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO/deploy/helm/sriovkit/Chart.yaml")
repo=$(sed -n 's/^  repository: *\(.*\)$/\1/p' "$REPO/deploy/helm/sriovkit/values.yaml" | head -1)
image="docker.io/$repo:$name"

# --- the base: Debian bookworm (minbase) from the Debian mirror, under the FROM name ----------
# The machine reaches the Internet through a TLS-intercepting egress proxy: its CA certificates
# (the host's /usr/local/share/ca-certificates) go into the base so that the Dockerfile's own
# `apt-get install ... python3-pip` (ca-certificates) trusts them and pip can reach PyPI.
suite=${base#*:}; suite=${suite%-slim}
cas=$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-12)
base_key="$suite-$cas"
if ! bah images --noheading --format '{{.Name}}:{{.Tag}} {{.Digest}}' 2>/dev/null | grep -q "^docker.io/library/$base " \
   || [ "$(cat "$D/base.key" 2>/dev/null)" != "$base_key" ]; then
  log "making base image $base (mmdebstrap $suite minbase)"
  rm -f "$D/base.tar"
  mmdebstrap --variant=minbase --mode=root --format=tar \
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"' \
    --customize-hook='for f in /usr/local/share/ca-certificates/*.crt; do [ -e "$f" ] && cp "$f" "$1/usr/local/share/ca-certificates/"; done; true' \
    --customize-hook='rm -rf "$1/var/lib/apt/lists"/* "$1/var/cache/apt"/*.bin' \
    "$suite" "$D/base.tar" \
    "deb http://deb.debian.org/debian $suite main" \
    "deb http://deb.debian.org/debian $suite-updates main" \
    "deb http://deb.debian.org/debian-security $suite-security main" >"$D/mmdebstrap.log" 2>&1 \
    || { tail -20 "$D/mmdebstrap.log" >&2; echo "image.sh: mmdebstrap failed" >&2; exit 1; }
  c=$(bah from scratch)
  bah add "$c" "$D/base.tar" / >/dev/null
  bah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  bah commit --rm -q "$c" "docker.io/library/$base" >/dev/null
  rm -f "$D/base.tar"
  echo "$base_key" > "$D/base.key"
fi

# --- the image: deploy/Dockerfile, unchanged ---------------------------------------------------
ignore="$REPO/deploy/Dockerfile.dockerignore"
# the files the Dockerfile can take (what its .dockerignore lets in with `!PATH`), as git sees
# them: tracked or new, not ignored (so a build's __pycache__ or egg-info does not count)
mapfile -t allowed < <(sed -n 's|^!\(.*[^/]\)/*$|\1|p' "$ignore")
ctx_key=$(cd "$REPO" && { cat deploy/Dockerfile "$ignore";
          git ls-files -co --exclude-standard -z -- "${allowed[@]}" | sort -z | xargs -0 sha256sum;
          cat "$D/base.key"; } | sha256sum | cut -c1-16)
out="$D/sriovkit-$name-$ctx_key.tar"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
log "buildah bud -f deploy/Dockerfile -t $image (log: $D/build.log)"
start=$(date +%s)
(cd "$REPO" && bah bud --pull=never --layers --network host --isolation chroot \
    --ignorefile "$ignore" -f deploy/Dockerfile -t "$image" .) >"$D/build.log" 2>&1 \
  || { tail -30 "$D/build.log" >&2; echo "image.sh: buildah bud failed" >&2; exit 1; }
# keep the three newest archives (other trees' builds may still use theirs)
# (on a fresh cache there is none yet: ls fails, which must not fail the build under pipefail)
{ ls -t "$D"/sriovkit-*.tar 2>/dev/null || true; } | tail -n +3 | xargs -r rm -f
bah push -q "$image" "docker-archive:$out.tmp:$image" >/dev/null
mv "$out.tmp" "$out"
log "built $image in $(( $(date +%s) - start )) s"
echo "$out"
