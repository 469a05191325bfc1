#!/bin/bash
# Guest side of tests/e2e/test_cni.py (issue 6 scenarios 3, 4, 5 (CNI part) and 6).
#   cni.sh OUT_DIR SRIOVCTL
# Installs the `sriov` shim (no agent: it execs the in-process plugin) into a CNI bin dir and
# drives it as a runtime would (CNI_* env + netconf on stdin, host-local IPAM from /usr/lib/cni)
# on eth0's real VFs, recording the kernel's view (PF vfinfo_list, sysfs, each pod netns) at
# every step. Asserts nothing. Leaves eth0 at 0 VFs and no namespace behind.
#
#   step           what happened just before the snapshot
#   start          4 VFs, shim installed, every pod namespace made (pod-a/b/m/c/g/u/r; pod-h later)
#   added          scenario 3: VF0 -> pod-a, VF1 -> pod-b (vlan 100 qos 3, mac, spoofchk off,
#                  trust on, max_tx_rate 100, host-local); ping-a-b / ping-b-a recorded here, then
#                  CHECK of pod-a (check), and again after `ip link set eth0 vf 0 vlan 101` (check-drifted),
#                  then ping-isolated: pod-a -> pod-b across the two VLANs
#   deleted        scenario 3: both DELs
#   mac-added      VF2 -> pod-m with a MAC and no trust setting;  mac-deleted: its DEL
#   refused        scenario 4: ADDs of VF2 with link_state, then min_tx_rate (both refused by igb)
#   gone-added     scenario 6: VF0 -> pod-g
#   gone-netns     pod-g deleted (ip netns del), VF0 back in the host (waited for)
#   gone-deleted   scenario 6: DEL with the namespace gone
#   held-added     scenario 6b: VF1 -> pod-h; then pod-h deleted while `sleep` still holds it
#   held-deleted   DEL right away (host-netdevs-at-del.txt: VF1's host interfaces then), snapshot
#                  once the holder exited and VF1 is back
#   dpdk-before    scenario 5: VF3 bound to vfio-pci (test set-up)
#   dpdk-added     VF3 ADD in userspace mode (vlan 400); VF2 ADD with driver vfio-pci (vlan 500)
#   dpdk-deleted   both DELs
set -u
OUT=$1 SRIOVCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$HERE/../data
. "$HERE/lib.sh"

WORK=$(mktemp -d /tmp/sriovkit-cni-e2e.XXXXXX)
BIN=$WORK/bin STATE=$WORK/state IPAM=$WORK/ipam
mkdir -p "$BIN" "$OUT/conf"

pod_ip() { ip -n "$1" -4 -o addr show dev net1 2>/dev/null | awk '{print $4; exit}' | cut -d/ -f1; }

# host-local's allocations (one file per IP; the attachment records: state_files, lib.sh)
ipam_files() { find "$IPAM" -type f 2>/dev/null | sed "s|$IPAM/||" | sort > "$1/ipam-files.txt"; }

ip link set eth0 up
set_numvfs eth0 4 || exit 1
VF0=$(vf_addr eth0 0) VF1=$(vf_addr eth0 1) VF2=$(vf_addr eth0 2) VF3=$(vf_addr eth0 3)
for ns in pod-a pod-b pod-m pod-c pod-g pod-u pod-r; do ip netns add "$ns"; done
record "$OUT/start" install-cni "$SRIOVCTL" install-cni --dest "$BIN" --agent-socket "$WORK/no-agent.sock" \
    --fallback-python "$(dirname "$SRIOVCTL")/python"
snapshot "$OUT/start"

# --- scenario 3: two pods on two VFs, same VLAN, ping through the NIC, then DEL
cni "$OUT/added" add-a ADD ctr-a /run/netns/pod-a "$(conf vf "$VF0" 02:00:00:00:a0:01)"
cni "$OUT/added" add-b ADD ctr-b /run/netns/pod-b "$(conf vf "$VF1" 02:00:00:00:b0:01)"
snapshot "$OUT/added"
snapshot_netns "$OUT/added" pod-a pod-b
ipam_files "$OUT/added"
IP_A=$(pod_ip pod-a) IP_B=$(pod_ip pod-b)
say "pod-a ${IP_A:-no address}, pod-b ${IP_B:-no address}"
if [ -n "$IP_A" ] && [ -n "$IP_B" ]; then
    record "$OUT/added" ping-a-b ip netns exec pod-a ping -c 3 -w 15 "$IP_B"
    record "$OUT/added" ping-b-a ip netns exec pod-b ping -c 3 -w 15 "$IP_A"
fi
# CHECK as a runtime makes it (the config plus prevResult: ADD's result), then after the VF's VLAN
# was changed behind the plugin's back (DEL restores it all the same)
with_prev_result() { { head -c -2 "$1"; printf ',\n  "prevResult": %s\n}\n' "$(cat "$2")"; } > "$3"; }
with_prev_result "$OUT/conf/vf-$VF0.json" "$OUT/added/add-a.json" "$OUT/conf/check-a.json"
cni "$OUT/added" check CHECK ctr-a /run/netns/pod-a "$OUT/conf/check-a.json"
ip link set eth0 vf 0 vlan 101 qos 3
cni "$OUT/added" check-drifted CHECK ctr-a /run/netns/pod-a "$OUT/conf/check-a.json"
# the NIC enforces the VLANs: pod-a (now 101) no longer reaches pod-b (100)
[ -n "$IP_B" ] && record "$OUT/added" ping-isolated ip netns exec pod-a ping -c 2 -w 4 "$IP_B"
cni "$OUT/deleted" del-a DEL ctr-a /run/netns/pod-a "$OUT/conf/vf-$VF0.json"
cni "$OUT/deleted" del-b DEL ctr-b /run/netns/pod-b "$OUT/conf/vf-$VF1.json"
snapshot "$OUT/deleted"
snapshot_netns "$OUT/deleted" pod-a pod-b
ipam_files "$OUT/deleted"
state_files "$OUT/deleted"

# --- scenario 3b: a MAC without `trust` (the common config); igb lets a VF change its own MAC
# only when trusted or when the PF never set one
cni "$OUT/mac-added" add ADD ctr-m /run/netns/pod-m "$(conf mac-only "$VF2" 02:00:00:00:e0:01)"
snapshot "$OUT/mac-added"
snapshot_netns "$OUT/mac-added" pod-m
cni "$OUT/mac-deleted" del DEL ctr-m /run/netns/pod-m "$OUT/conf/mac-only-$VF2.json"
snapshot "$OUT/mac-deleted"
snapshot_netns "$OUT/mac-deleted" pod-m

# --- scenario 4: settings igb refuses; each ADD applies others first, so a rollback is needed
cni "$OUT/refused" add-link-state ADD ctr-ls /run/netns/pod-c "$(conf link-state "$VF2" 02:00:00:00:c0:01)"
cni "$OUT/refused" add-min-rate ADD ctr-mr /run/netns/pod-c "$(conf min-rate "$VF2")"
snapshot "$OUT/refused"
snapshot_netns "$OUT/refused" pod-c
state_files "$OUT/refused"

# --- scenario 6: the pod's namespace goes away before DEL
cni "$OUT/gone-added" add ADD ctr-g /run/netns/pod-g "$(conf netns-gone "$VF0" 02:00:00:00:d0:01)"
snapshot "$OUT/gone-added"
snapshot_netns "$OUT/gone-added" pod-g
ipam_files "$OUT/gone-added"
ip netns del pod-g
say "pod-g deleted; $VF0 interfaces in the host right away: $(ls "$(pci_dir "$VF0")/net" 2>/dev/null | paste -sd' ' -)"
wait_netdev "$VF0" 20
snapshot "$OUT/gone-netns"
cni "$OUT/gone-deleted" del DEL ctr-g /run/netns/pod-g "$OUT/conf/netns-gone-$VF0.json"
snapshot "$OUT/gone-deleted"
ipam_files "$OUT/gone-deleted"
state_files "$OUT/gone-deleted"

# --- scenario 6b: the namespace is gone from the runtime's view, but a process still holds it, so
# the kernel returns the VF only later (as on a node where teardown lags): DEL comes first
ip netns add pod-h
cni "$OUT/held-added" add ADD ctr-h /run/netns/pod-h "$(conf netns-gone "$VF1" 02:00:00:00:d0:02)"
snapshot "$OUT/held-added"
ip netns exec pod-h sleep 6 &
HOLDER=$!
sleep 0.2
ip netns del pod-h
mkdir -p "$OUT/held-deleted"
ls "$(pci_dir "$VF1")/net" > "$OUT/held-deleted/host-netdevs-at-del.txt" 2>/dev/null
cni "$OUT/held-deleted" del DEL ctr-h /run/netns/pod-h "$OUT/conf/netns-gone-$VF1.json"
say "holder $(kill -0 $HOLDER 2>/dev/null && echo 'still holds the netns' || echo 'had exited') when DEL returned"
wait $HOLDER
wait_netdev "$VF1" 20
snapshot "$OUT/held-deleted"

# --- scenario 5 (CNI part): a vfio-pci VF in userspace mode; a VF rebound to vfio-pci by the CNI
bind_driver "$VF3" vfio-pci
snapshot "$OUT/dpdk-before"
snapshot_netns "$OUT/dpdk-before" pod-u pod-r
cni "$OUT/dpdk-added" add-userspace ADD ctr-u /run/netns/pod-u "$(conf userspace "$VF3")"
cni "$OUT/dpdk-added" add-rebind ADD ctr-r /run/netns/pod-r "$(conf driver "$VF2")"
snapshot "$OUT/dpdk-added"
snapshot_netns "$OUT/dpdk-added" pod-u pod-r
cni "$OUT/dpdk-deleted" del-userspace DEL ctr-u /run/netns/pod-u "$OUT/conf/userspace-$VF3.json"
cni "$OUT/dpdk-deleted" del-rebind DEL ctr-r /run/netns/pod-r "$OUT/conf/driver-$VF2.json"
settle_vfs eth0
snapshot "$OUT/dpdk-deleted"
snapshot_netns "$OUT/dpdk-deleted" pod-u pod-r
state_files "$OUT/dpdk-deleted"

for ns in pod-a pod-b pod-m pod-c pod-u pod-r; do ip netns del "$ns"; done
echo 0 > /sys/class/net/eth0/device/sriov_numvfs
rm -rf "$WORK"
say "done"
