#!/bin/bash
# Guest side of tests/e2e/test_cniagent.py and bench/vm_cni.py (issue 18): the path operators
# deploy, on a real igbvf VF.
#   cniagent.sh OUT_DIR SRIOVCTL
# Starts `sriovctl agent` serving the CNI socket (its device plugin waits for a kubelet that never
# comes: no kubelet.sock), installs the NATIVE shim against that socket with no fallback (so every
# answer is the agent's), and drives ADD/DEL of VF0 as a runtime would (vlan, mac, spoofchk,
# trust, max_tx_rate, host-local IPAM), timing each call. Then the same ADD/DEL as the standalone
# process (`python -m sriovkit.cni.plugin`), VERSION through the native shim, and a second agent
# under guest/profile_agent.py (cProfile around each call it serves). Asserts nothing.
#
#   step        what happened just before the snapshot
#   start       2 VFs, agent up, native shim installed, pod-a made
#   added       the first ADD through shim -> agent (add.json: its result)
#   deleted     its DEL (del.json)
#   end         after every timed cycle (agent, standalone, profiled)
# times.tsv: one line per timed call: PATH COMMAND ITERATION SECONDS RC, PATH one of agent,
# standalone, version; paired and upstream (the agent's calls alternated with upstream's
# plugin's, see versus); unprofiled, profiled (ADD/DEL through the second agent without and with
# the profiler) and nomodprobe (the same, unprofiled, with /proc/sys/kernel/modprobe empty: the
# kernel's module autoload off, a lab-only comparison). Wall time around the exec, taken from
# bash's $EPOCHREALTIME (no fork). A cycle whose call failed leaves its output in
# failed-<path>-<command>-<i>.{json,err}.
# agent.prof / agent-del.prof: cProfile stats of the profiled agent's ADDs / DELs (pstats format);
# agent-calls.tsv: the profiled agent's own time per call (COMMAND CONTAINER SECONDS PROFILED).
set -u
OUT=$1 SRIOVCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$HERE/../data
PY=$(dirname "$SRIOVCTL")/python
. "$HERE/lib.sh"
# the test's few cycles by default (it asserts behaviour; the CI boot runs every script): bench/vm_cni.py asks for more
CYCLES=${VMLAB_CNI_CYCLES:-3} STANDALONE=${VMLAB_CNI_STANDALONE:-1} PROFILED=${VMLAB_CNI_PROFILED:-2}

WORK=$(mktemp -d /tmp/sriovkit-cniagent-e2e.XXXXXX)
BIN=$WORK/bin STATE=$WORK/state IPAM=$WORK/ipam SOCK=$WORK/run/cni.sock DP=$WORK/dp
mkdir -p "$BIN" "$OUT/conf" "$WORK/run" "$WORK/dp"
TIMES=$OUT/times.tsv
# the standalone process's state dir (exported, not an `env` exec in the timed call; the agent
# takes its own from --cni-state-dir and ignores SRIOVKIT_* a shim forwards)
export SRIOVKIT_CNI_STATE_DIR=$STATE
: > "$TIMES"
printf '{"resourceList": [{"resourceName": "vmlab_vf", "selectors": {"pfNames": ["eth0"]}}]}\n' > "$WORK/config.json"

AGENT=""
start_agent() {  # start_agent LOGNAME CMD...: the agent in the background, wait for its CNI socket
    local log=$1; shift
    rm -f "$SOCK"
    mkdir -p "$DP"
    "$@" --config-file "$WORK/config.json" --device-plugin-dir "$DP" --devinfo-dir "$DP/devinfo" \
        --cni-socket "$SOCK" --cni-state-dir "$STATE" --cni-devinfo-dir "$DP/cni-devinfo" \
        --cni-log-dir "$WORK/log" --metrics-address "" > "$OUT/$log.out" 2> "$OUT/$log.log" &
    AGENT=$!
    local t0=$EPOCHREALTIME i
    for i in $(seq 600); do
        [ -S "$SOCK" ] && { say "$log: pid $AGENT serves $SOCK after $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s"; return 0; }
        kill -0 "$AGENT" 2>/dev/null || break
        sleep 0.2
    done
    say "$log: no CNI socket (agent $(kill -0 "$AGENT" 2>/dev/null && echo running || echo exited))"
    sed 's/^/    /' "$OUT/$log.log"
    return 1
}
stop_agent() {
    [ -n "$AGENT" ] || return 0
    kill -TERM "$AGENT"; wait "$AGENT"; echo $? > "$OUT/$1.rc"
    say "$1: stopped, rc=$(cat "$OUT/$1.rc")"
    AGENT=""
}

CONF=$OUT/conf/vf.json  # (lib.sh has a conf function)
ip link set eth0 up
set_numvfs eth0 2 || exit 1
VF0=$(vf_addr eth0 0)
sed -e "s|@DEVICE@|$VF0|" -e "s|@MAC@|02:00:00:00:a0:01|" -e "s|@IPAMDIR@|$IPAM|" "$DATA/cni-vf.json" \
    | sed 's|"logLevel": "debug"|"logLevel": "info"|' > "$CONF"
ip netns add pod-a

# timed PATH COMMAND I STEP NAME [EXE...]: one call as a runtime makes it (CNI_* in the exec's
# environment, the netconf on stdin), wall time to times.tsv; stdout/stderr/rc as STEP/NAME.*
timed() {
    local path=$1 command=$2 i=$3 step=$4 name=$5; shift 5
    mkdir -p "$step"
    local t0=$EPOCHREALTIME
    CNI_COMMAND=$command CNI_CONTAINERID=ctr-$path-$i CNI_NETNS=/run/netns/pod-a CNI_IFNAME=net1 \
        CNI_PATH=$BIN:/usr/lib/cni "$@" < "$CONF" > "$step/$name.json" 2> "$step/$name.err"
    local rc=$? t1=$EPOCHREALTIME
    echo $rc > "$step/$name.rc"
    printf '%s\t%s\t%s\t%s\t%s\n' "$path" "$command" "$i" "$(awk "BEGIN{printf \"%.6f\", $t1 - $t0}")" "$rc" >> "$TIMES"
    if [ $rc != 0 ]; then
        say "$path $command $i: rc=$rc $(head -c 400 "$step/$name.json")"
        cp "$step/$name.json" "$OUT/failed-$path-$command-$i.json"; cp "$step/$name.err" "$OUT/failed-$path-$command-$i.err"
    fi
    return $rc
}

# cycles PATH N EXE...: N ADD+DEL cycles (the first recorded by `added`/`deleted` when PATH=agent)
cycles() {
    local path=$1 n=$2 i; shift 2
    for i in $(seq "$n"); do
        if [ "$path" = agent ] && [ "$i" = 1 ]; then
            timed "$path" ADD "$i" "$OUT/added" add "$@"
            snapshot "$OUT/added"; snapshot_netns "$OUT/added" pod-a
            find "$IPAM" -type f | sed "s|$IPAM/||" | sort > "$OUT/added/ipam-files.txt"
            timed "$path" DEL "$i" "$OUT/deleted" del "$@"
            snapshot "$OUT/deleted"; snapshot_netns "$OUT/deleted" pod-a
            find "$IPAM" -type f | sed "s|$IPAM/||" | sort > "$OUT/deleted/ipam-files.txt"
        else
            timed "$path" ADD "$i" "$WORK/calls" "add" "$@" && timed "$path" DEL "$i" "$WORK/calls" "del" "$@"
        fi
    done
    say "$path: $n cycles done"
}

# modlog (VMLAB_CNI_MODLOG=N, bench/vm_cni.py --modlog N): N more cycles through the second
# agent with the kernel's module_request tracepoint on, each event with the kernel stack that
# asked (so the syscall that made it): module-requests.trace, a "== PATH COMMAND I" marker line
# before each call. Lab-only; the calls are timed as path `modlog` (tracing on).
modlog() {
    local t=/sys/kernel/tracing i
    [ -e $t/trace ] || mount -t tracefs nodev $t 2>/dev/null || { t=/sys/kernel/debug/tracing; [ -e $t/trace ]; } \
        || { say "modlog: no tracefs"; return 0; }
    echo 0 > $t/tracing_on; : > $t/trace
    echo stacktrace > $t/events/module/module_request/trigger
    echo 1 > $t/events/module/module_request/enable
    echo 1 > $t/tracing_on
    for i in $(seq "$VMLAB_CNI_MODLOG"); do
        echo "== modlog ADD $i" > $t/trace_marker
        timed modlog ADD "$i" "$WORK/calls" add "$BIN/sriov"
        echo "== modlog DEL $i" > $t/trace_marker
        timed modlog DEL "$i" "$WORK/calls" del "$BIN/sriov"
    done
    # the control: a link kind no module provides makes the kernel ask for "rtnl-link-KIND"
    echo "== control: ip link add type sknosuchkind" > $t/trace_marker
    ip link add skmodctl0 type sknosuchkind 2> /dev/null
    echo 0 > $t/tracing_on
    cp $t/trace "$OUT/module-requests.trace"
    echo 0 > $t/events/module/module_request/enable
    echo '!stacktrace' > $t/events/module/module_request/trigger
    : > $t/trace
    say "modlog: $(grep -c 'module_request:' "$OUT/module-requests.trace") module requests in $VMLAB_CNI_MODLOG cycles"
}

# ab N (VMLAB_CNI_BASELINE=SRC, bench/vm_cni.py --baseline SRC): this tree's agent and one running
# the sriovkit package of SRC (another tree's src/, e.g. main's before a change) up side by side,
# each behind a native shim of its own, their ADD/DEL cycles alternated (paths `current` and
# `baseline`): a before/after comparison in one boot, each cycle as loaded as its neighbour.
ab() {
    local n=$1 i cur
    start_agent current-agent "$SRIOVCTL" agent || return 1
    cur=$AGENT
    local SOCK=$WORK/run/baseline.sock STATE=$WORK/state-baseline DP=$WORK/dp-baseline
    PYTHONPATH=$VMLAB_CNI_BASELINE start_agent baseline-agent "$PY" -m sriovkit agent \
        || { AGENT=$cur; stop_agent current-agent; return 1; }
    mkdir -p "$WORK/bin-baseline"
    record "$OUT/start" install-cni-baseline "$SRIOVCTL" install-cni --dest "$WORK/bin-baseline" \
        --agent-socket "$SOCK" --no-fallback
    for i in $(seq "$n"); do
        timed current ADD "$i" "$WORK/calls" add "$BIN/sriov" && timed current DEL "$i" "$WORK/calls" del "$BIN/sriov"
        timed baseline ADD "$i" "$WORK/calls" add "$WORK/bin-baseline/sriov" \
            && timed baseline DEL "$i" "$WORK/calls" del "$WORK/bin-baseline/sriov"
    done
    stop_agent baseline-agent
    AGENT=$cur
    stop_agent current-agent
    say "ab: $n alternated cycles, this tree and $VMLAB_CNI_BASELINE"
}

# versus N (VMLAB_CNI_UPSTREAM=BINARY, bench/vm_cni.py when bench/peers/build.sh has upstream's
# sriov-cni): N cycles through the agent (path `paired`) alternated with N through upstream's
# plugin (path `upstream`), same VF, same netconf, same IPAM, then N VERSIONs of each
# (`upstream` VERSION): one boot, each call as loaded as its neighbour. Upstream keeps its
# state under /var/lib/cni/sriov, the guest's throwaway overlay.
versus() {
    local n=$1 i
    for i in $(seq "$n"); do
        timed paired ADD "$i" "$WORK/calls" add "$BIN/sriov" && timed paired DEL "$i" "$WORK/calls" del "$BIN/sriov"
        timed upstream ADD "$i" "$WORK/calls" add-upstream "$VMLAB_CNI_UPSTREAM" \
            && timed upstream DEL "$i" "$WORK/calls" del-upstream "$VMLAB_CNI_UPSTREAM"
    done
    for i in $(seq "$n"); do
        timed paired VERSION "$i" "$WORK/calls" version "$BIN/sriov"
        timed upstream VERSION "$i" "$WORK/calls" version-upstream "$VMLAB_CNI_UPSTREAM"
    done
    say "versus: $n alternated cycles, the agent and $VMLAB_CNI_UPSTREAM"
}

# --- the agent and the native shim (what operators deploy)
start_agent agent "$SRIOVCTL" agent || { ip netns del pod-a; echo 0 > /sys/class/net/eth0/device/sriov_numvfs; exit 1; }
record "$OUT/start" install-cni "$SRIOVCTL" install-cni --dest "$BIN" --agent-socket "$SOCK" --no-fallback
snapshot "$OUT/start"
snapshot_netns "$OUT/start" pod-a
cycles agent "$CYCLES" "$BIN/sriov"
for i in $(seq "$CYCLES"); do timed version VERSION "$i" "$WORK/calls" version "$BIN/sriov"; done
cp "$WORK/calls/version.json" "$OUT/version.json"
[ -n "${VMLAB_CNI_UPSTREAM:-}" ] && versus "${VMLAB_CNI_VERSUS:-$CYCLES}"
stop_agent agent

[ -n "${VMLAB_CNI_BASELINE:-}" ] && ab "${VMLAB_CNI_AB:-8}"

# --- the standalone process (no agent: what the fallback execs)
cycles standalone "$STANDALONE" "$PY" -m sriovkit.cni.plugin
# what stops it (bench/vm_cni.py's floors under its rows): the same process answering VERSION
# (interpreter start and the plugin's imports, no device work), and the interpreter doing nothing
for i in $(seq "$STANDALONE"); do
    timed standalone VERSION "$i" "$WORK/calls" version-standalone "$PY" -m sriovkit.cni.plugin
    timed interpreter START "$i" "$WORK/calls" interpreter "$PY" -c pass
done

# --- the agent again, under cProfile (guest/profile_agent.py): first PROFILED calls timed by the
# agent itself without the profiler, then PROFILED with it
if [ "$PROFILED" -gt 0 ]; then
    PROFILE_OUT=$OUT start_agent profiled-agent "$PY" "$HERE/profile_agent.py" \
        && { cycles unprofiled "$PROFILED" "$BIN/sriov"; cycles profiled "$PROFILED" "$BIN/sriov"
             # what the same calls cost when the kernel's module autoload is off: a SIOCGIFINDEX for
             # a name that is not there runs request_module("netdev-NAME") (modprobe, twice as root)
             MODPROBE=$(cat /proc/sys/kernel/modprobe); echo > /proc/sys/kernel/modprobe
             cycles nomodprobe "$PROFILED" "$BIN/sriov"
             echo "$MODPROBE" > /proc/sys/kernel/modprobe
             [ "${VMLAB_CNI_MODLOG:-0}" -gt 0 ] && modlog; }
    stop_agent profiled-agent
fi
snapshot "$OUT/end"
snapshot_netns "$OUT/end" pod-a
find "$STATE" -name '*.json' ! -name '.*' 2>/dev/null | sed "s|$STATE/||" | sort > "$OUT/end/state-files.txt"
find "$IPAM" -type f 2>/dev/null | sed "s|$IPAM/||" | sort > "$OUT/end/ipam-files.txt"

ip netns del pod-a
echo 0 > /sys/class/net/eth0/device/sriov_numvfs
rm -rf "$WORK"
say "done"
