#!/bin/bash
# Guest entry point for one VM boot: run each scenario script in turn.
#   run.sh OUT_DIR SRIOVCTL SCRIPT...
# Script S writes its files under OUT_DIR/S/ and its log to OUT_DIR/S/guest.log (also streamed to
# stdout with a prefix, so the boot's console output tells the whole story); its exit status goes
# to OUT_DIR/S/rc. Each script must leave the VM as it found it (0 VFs, drivers as booted).
set -u
OUT=$1 SRIOVCTL=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
for s in "$@"; do
    mkdir -p "$OUT/$s"
    t0=$(cut -d' ' -f1 /proc/uptime)
    bash "$HERE/$s.sh" "$OUT/$s" "$SRIOVCTL" 2>&1 | tee "$OUT/$s/guest.log" | sed "s/^/[$s] /"
    echo "${PIPESTATUS[0]}" > "$OUT/$s/rc"
    echo "[$s] exit=$(cat "$OUT/$s/rc") guest_seconds=$(awk "BEGIN{print $(cut -d' ' -f1 /proc/uptime) - $t0}")"
done
sync
