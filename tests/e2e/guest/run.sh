#!/bin/bash
# Guest entry point for one VM boot: run each scenario script in turn.
#   run.sh OUT_DIR SRIOVCTL SCRIPT...
# Script S writes its files under OUT_DIR/S/ and its log to OUT_DIR/S/guest.log (also streamed to
# stdout with a prefix, so the boot's console output tells the whole story); its exit status goes
# to OUT_DIR/S/rc. Each script must leave the VM as it found it (0 VFs, drivers as booted).
#
# A script still running after VMLAB_SCRIPT_BUDGET seconds (default 420) is taken as hung: where
# its processes wait (state, wait channel, kernel stack) and the kernel's blocked-task dump go to
# OUT_DIR/S/hung.txt and stdout, its processes are killed, and the boot ends there (rc 124 and
# OUT_DIR/S/hung): a task stuck in the kernel would block every later script too. The host
# (tests/e2e/e2e_lab.py) decides whether to boot again for the scripts that did not finish.
set -u
OUT=$1 SRIOVCTL=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
BUDGET=${VMLAB_SCRIPT_BUDGET:-420}

# Every process of session $1: pid, state, wait channel, command line, then its kernel stack.
# Reads /proc with builtins only: the host whose / the guest runs on may have no procps.
session_report() {
    local sid=$1 p stat rest fields wchan cmd line
    for p in /proc/[0-9]*; do
        read -r stat < "$p/stat" 2>/dev/null || continue
        rest=${stat##*) }            # the fields after "(comm) ": state ppid pgrp session ...
        read -ra fields <<< "$rest"
        [ "${fields[3]:-}" = "$sid" ] || continue
        read -r wchan < "$p/wchan" 2>/dev/null || wchan=?
        cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)
        echo "pid ${p#/proc/} state ${fields[0]} wchan $wchan: ${cmd:-[${stat#*(}}"
        while read -r line; do echo "    $line"; done < "$p/stack" 2>/dev/null
    done
}

# hung_report SCRIPT SID START_UPTIME
hung_report() {
    local s=$1 sid=$2 since=$3
    echo "guest script $s still running after ${BUDGET}s (uptime $(cut -d' ' -f1 /proc/uptime)s)"
    echo "--- its processes"
    session_report "$sid"
    echo "--- the kernel's messages since it started (ending with sysrq w: the blocked tasks)"
    { echo w > /proc/sysrq-trigger; } 2>/dev/null
    dmesg 2>/dev/null | awk -v since="$since" 'match($0, /^\[ *[0-9.]+\]/) {
        t = substr($0, 2, RLENGTH - 2) + 0 } t >= since' | awk -f "$HERE/../vmlab/collapse.awk" | tail -n 200
}

# seconds since uptime $1
elapsed() { awk "BEGIN{print $(cut -d' ' -f1 /proc/uptime) - $1}"; }

for s in "$@"; do
    dir=$OUT/$s
    mkdir -p "$dir"
    : > "$dir/guest.log"   # before tail starts: the script's own redirect may come later
    t0=$(cut -d' ' -f1 /proc/uptime)
    # its own session, so that its processes can be found and killed together
    setsid bash "$HERE/$s.sh" "$dir" "$SRIOVCTL" > "$dir/guest.log" 2>&1 < /dev/null &
    pid=$!
    tail -n +1 -f --pid="$pid" "$dir/guest.log" 2>/dev/null | sed -u "s/^/[$s] /" &
    streamer=$!
    sleep "$BUDGET" &
    dog=$!
    wait -n -p first "$pid" "$dog"
    rc=$?
    if [ "$first" = "$dog" ]; then
        hung_report "$s" "$pid" "$t0" > "$dir/hung.txt" 2>&1
        disown "$pid"   # no "Killed" notice from this shell
        kill -KILL -- "-$pid" 2>/dev/null
        sed "s/^/[$s hung] /" "$dir/hung.txt"
        touch "$dir/hung"
        echo 124 > "$dir/rc"
        echo "[$s] exit=124 guest_seconds=$(elapsed "$t0") hung"
        sync
        exit 124
    fi
    kill "$dog" 2>/dev/null
    wait "$streamer" 2>/dev/null
    echo "$rc" > "$dir/rc"
    echo "[$s] exit=$rc guest_seconds=$(elapsed "$t0")"
done
sync
