#!/bin/bash
# Guest side of tests/e2e/test_discovery.py (scenarios 1, 5 (discovery part), 7 (pools part)).
#   discovery.sh OUT_DIR SRIOVCTL
# Enables VFs on the real igb PFs, binds one VF per PF to vfio-pci, and records at each step
# the kernel's view and what `sriovctl discover` / `sriovctl pools` say. Leaves every PF at 0 VFs.
set -u
OUT=$1 SRIOVCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$HERE/../data
. "$HERE/lib.sh"

PFS=$(for n in /sys/class/net/*; do
    [ "$(basename "$(readlink -f "$n/device/driver" 2>/dev/null)")" = igb ] && basename "$n"; done)
say "igb PFs: $(echo $PFS)"

ip link set eth0 up
set_numvfs eth0 4 || exit 1
if [ -e /sys/class/net/eth1 ]; then
    ip link set eth1 up
    set_numvfs eth1 3 || exit 1
fi
snapshot "$OUT/vfs"
record "$OUT/vfs" discover "$SRIOVCTL" discover --host-root / -o json
record "$OUT/vfs" pools-eth0-0-2 "$SRIOVCTL" pools --config-file "$DATA/pools-eth0-0-2.json" -o json
record "$OUT/vfs" pools-split "$SRIOVCTL" pools --config-file "$DATA/pools-split.json" -o json

bind_driver "$(vf_addr eth0 3)" vfio-pci
[ -e /sys/class/net/eth1 ] && bind_driver "$(vf_addr eth1 0)" vfio-pci
snapshot "$OUT/vfio"
record "$OUT/vfio" discover "$SRIOVCTL" discover --host-root / -o json
record "$OUT/vfio" pools-split "$SRIOVCTL" pools --config-file "$DATA/pools-split.json" -o json

for pf in $PFS; do echo 0 > "/sys/class/net/$pf/device/sriov_numvfs"; done
say "done"
