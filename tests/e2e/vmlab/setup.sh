#!/bin/bash
# One-time setup for sriovkit's end-to-end VM lab (adapted from shared/vmlab; ours to own).
#  - installs QEMU >= 8 (igb device) from bookworm-backports
#  - downloads (does NOT install) the backports kernel .deb + busybox-static .deb,
#    extracts vmlinuz + modules into $VMLAB/kernel, generates modules.dep with busybox depmod
#  - builds a tiny busybox initramfs ($VMLAB/initramfs.cpio.gz)
# Idempotent; re-run with FORCE=1 to rebuild.
set -euo pipefail
# Any failure says which step failed and exits non-zero: the e2e suite turns that into a test
# failure (never a skip), so CI cannot go green without the lab.
trap 'rc=$?; [ $rc = 0 ] || echo "[setup] FAILED (exit $rc): $BASH_COMMAND" >&2' EXIT
[ "$(id -u)" = 0 ] || { echo "[setup] FAILED: must run as root (apt-get, /var/tmp/vmlab)" >&2; exit 1; }
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
VMLAB=${VMLAB_CACHE:-/var/tmp/vmlab}    # build outputs live here, not beside the scripts
mkdir -p "$VMLAB"
# one setup at a time: two at once on a fresh cache both edit modules.dep (sed -i) and lose each
# other's changes
exec 9> "$VMLAB/.setup.lock"
flock 9
mkdir -p "$VMLAB/initramfs" && cp "$HERE/initramfs/init" "$VMLAB/initramfs/init"
cd "$VMLAB"
export DEBIAN_FRONTEND=noninteractive

log() { echo "[setup $(date +%T)] $*" >&2; }

# 1. QEMU from backports (bookworm's own qemu 7.2 has no igb device)
if ! qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'; then
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding bookworm-backports apt source"
        # same archive as the machine's own bookworm source, backports suite
        URI=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v RS= '/Suites: bookworm( |$|\n)/ && !/security/ {for (i = 1; i <= NF; i++) if ($i == "URIs:") {print $(i+1); exit}}')
        [ -n "$URI" ] || URI=$(awk '/^deb / && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$URI" \
            > /etc/apt/sources.list.d/bpo.sources
    fi
    # a fresh machine's lists may predate the backports source or be stale
    apt-cache policy qemu-system-x86 2>/dev/null | grep -q bookworm-backports || apt-get update -q
    log "installing qemu-system-x86 from bookworm-backports"
    apt-get install -y -q -t bookworm-backports --no-install-recommends qemu-system-x86
fi
qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"' || { log "qemu-system-x86_64 has no igb device"; exit 1; }
qemu-system-x86_64 --version | head -1 >&2
command -v xz >/dev/null || apt-get install -y -q --no-install-recommends xz-utils

# 2. Kernel + busybox: download only, extract locally (nothing installed into the host's /boot)
mkdir -p debs
[ -n "$(apt-cache depends -t bookworm-backports linux-image-amd64 2>/dev/null)" ] || apt-get update -q
KPKG=$(apt-cache depends -t bookworm-backports linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
KVER=${KPKG#linux-image-}
[ -n "$KPKG" ] || { log "no linux-image package found in bookworm-backports"; exit 1; }
log "guest kernel package: $KPKG (uname -r = $KVER)"
if [ ! -e "kernel/boot/vmlinuz-$KVER" ] || [ -n "${FORCE:-}" ]; then
    rm -rf kernel debs/linux-image-*.deb
    (cd debs && apt-get download -q -t bookworm-backports "$KPKG")
    mkdir -p kernel
    dpkg-deb -x debs/linux-image-*.deb kernel
    [ -n "${KEEP_DEBS:-}" ] || rm -f debs/linux-image-*.deb
fi
if [ ! -e bb/bin/busybox ] || [ -n "${FORCE:-}" ]; then
    rm -rf bb debs/busybox-static_*.deb
    (cd debs && apt-get download -q busybox-static)
    dpkg-deb -x debs/busybox-static_*.deb bb
fi
BB=$VMLAB/bb/bin/busybox
MODDIR=kernel/lib/modules/$KVER
if [ ! -s "$MODDIR/modules.dep" ] || [ -n "${FORCE:-}" ]; then
    log "depmod (busybox, handles .ko.xz)"
    "$BB" depmod -b "$VMLAB/kernel" "$KVER"
fi
# Pre-decompress the modules every boot loads (busybox modprobe would otherwise xz-decompress
# them in user space under emulation on every boot: ~1 s of TCG time)
EAGER=${VMLAB_EAGER_MODULES:-"igb igbvf vfio-pci vfio_iommu_type1 veth"}
# Checked on every run, not once behind a marker: a setup that ran depmod meanwhile (two at once on
# a fresh cache) rewrote modules.dep with the .ko.xz names of modules already decompressed, and
# every boot's modprobe then failed ("can't load module dca (...dca.ko.xz)").
for m in $EAGER; do
    pat=$(echo "$m" | sed 's/[-_]/[-_]/g')
    line=$(grep -E "/${pat}\.ko(\.xz)?:" "$MODDIR/modules.dep") || { log "module $m not found"; exit 1; }
    for f in ${line%%:*} ${line#*:}; do
        case $f in *.xz)
            [ ! -e "$MODDIR/$f" ] || { log "decompressing $f"; xz -d "$MODDIR/$f"; }
            # point modules.dep at the .ko (cheaper than a second 11 s depmod run)
            [ ! -e "$MODDIR/${f%.xz}" ] || sed -i "s#$(echo "$f" | sed 's/[.]/[.]/g')#${f%.xz}#g" "$MODDIR/modules.dep" ;;
        esac
    done
done
echo "$KVER" > kernel/KVER

# 3. initramfs: busybox + the modules needed to mount the 9p shares + overlayfs
if [ ! -e initramfs.cpio.gz ] || [ initramfs/init -nt initramfs.cpio.gz ] || [ "$HERE/setup.sh" -nt initramfs.cpio.gz ] || [ -n "${FORCE:-}" ]; then
    log "building initramfs"
    rm -rf initramfs.build && mkdir -p initramfs.build/{bin,dev,proc,sys,mnt,newroot,lib/early,lib/modules}
    cp "$BB" initramfs.build/bin/busybox
    cp initramfs/init initramfs.build/init
    chmod 755 initramfs.build/init
    for m in fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/overlayfs/overlay; do
        xz -dc "$MODDIR/kernel/$m.ko.xz" > "initramfs.build/lib/early/$(basename $m).ko"
    done
    (cd initramfs.build && find . | "$BB" cpio -o -H newc 2>/dev/null | gzip -1 > ../initramfs.cpio.gz)
    rm -rf initramfs.build
fi
ls -la "$VMLAB/initramfs.cpio.gz" "$VMLAB/kernel/boot/vmlinuz-$KVER" >&2
log "done"
