#!/bin/bash
# Guest side of tests/e2e/test_attack.py (issue 13 class 1 on a real igb VF).
#   attack.sh OUT_DIR SRIOVCTL
# A pod with NET_ADMIN against DEL, through the `sriov` shim (no agent: the in-process plugin) on
# eth0's real VFs. Records the kernel's view; asserts nothing. Leaves eth0 at 0 VFs, no namespace.
#
#   step       what happened just before the snapshot
#   start      2 VFs, shim installed, pod-x, pod-y and hideout made
#   added      VF0 -> pod-x, VF1 -> pod-y (vlan 100, mac, host-local)
#   attacked   pod-x: net1 renamed realvf, a veth pair net1 + podside made in its place;
#              pod-y: net1 moved into the namespace `hideout` as stash, a veth net1 made in pod-y
#   deleted    DEL of pod-x (del-x) and of pod-y (del-y, VF hidden: must say "try again")
#   returned   the VF moved back from hideout into pod-y as `back`; DEL of pod-y again (del-y-again)
set -u
OUT=$1 SRIOVCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$HERE/../data
. "$HERE/lib.sh"

WORK=$(mktemp -d /tmp/sriovkit-attack-e2e.XXXXXX)
BIN=$WORK/bin STATE=$WORK/state IPAM=$WORK/ipam
mkdir -p "$BIN" "$OUT/conf"

ip link set eth0 up
set_numvfs eth0 2 || exit 1
VF0=$(vf_addr eth0 0) VF1=$(vf_addr eth0 1)
for ns in pod-x pod-y hideout; do ip netns add "$ns"; done
record "$OUT/start" install-cni "$SRIOVCTL" install-cni --dest "$BIN" --agent-socket "$WORK/no-agent.sock" \
    --fallback-python "$(dirname "$SRIOVCTL")/python"
snapshot "$OUT/start"

cni "$OUT/added" add-x ADD ctr-x /run/netns/pod-x "$(conf vf "$VF0" 02:00:00:00:f0:01)"
cni "$OUT/added" add-y ADD ctr-y /run/netns/pod-y "$(conf vf "$VF1" 02:00:00:00:f0:02)"
snapshot "$OUT/added"
snapshot_netns "$OUT/added" pod-x pod-y

# the attack of issue 13: rename the VF, put a veth of the pod's own under its name
ip -n pod-x link set net1 down
ip -n pod-x link set net1 name realvf
ip -n pod-x link add net1 type veth peer name podside
# and a VF hidden in another namespace, a decoy in its place
ip -n pod-y link set net1 netns hideout name stash
ip -n pod-y link add net1 type veth peer name podside
snapshot "$OUT/attacked"
snapshot_netns "$OUT/attacked" pod-x pod-y hideout

cni "$OUT/deleted" del-x DEL ctr-x /run/netns/pod-x "$OUT/conf/vf-$VF0.json"
cni "$OUT/deleted" del-y DEL ctr-y /run/netns/pod-y "$OUT/conf/vf-$VF1.json"
snapshot "$OUT/deleted"
snapshot_netns "$OUT/deleted" pod-x pod-y hideout
state_files "$OUT/deleted"

ip -n hideout link set stash netns pod-y name back
cni "$OUT/returned" del-y-again DEL ctr-y /run/netns/pod-y "$OUT/conf/vf-$VF1.json"
snapshot "$OUT/returned"
snapshot_netns "$OUT/returned" pod-x pod-y hideout
state_files "$OUT/returned"

for ns in pod-x pod-y hideout; do ip netns del "$ns"; done
echo 0 > /sys/class/net/eth0/device/sriov_numvfs
rm -rf "$WORK"
say "done"
