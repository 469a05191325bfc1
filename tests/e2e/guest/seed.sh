#!/bin/bash
# Guest side of tests/e2e/test_seedcni.py (issue 19: the seeds' mode, no device plugin).
#   seed.sh OUT_DIR SRIOVCTL
# Installs the `sriov` shim (no agent: the in-process plugin) and calls it with netconfs that name
# only the PF (eth0, 2 real igbvf VFs), recording the kernel's view. Asserts nothing. Leaves eth0
# at 0 VFs and no namespace behind.
#
#   step         what happened just before the snapshot
#   start        2 VFs, shim installed, pod-1/2/3/d made
#   added        ADD ctr-1 -> pod-1, ctr-2 -> pod-2 (if0 eth0, host-local); ADD ctr-3 -> pod-3 (refused:
#                every VF attached); file-1 / file-2: the per-namespace records (<state>/<netns>/net1.json)
#   deleted      both DELs; files.txt: what is left under the state dir
#   dpdk-added   ADD ctr-d -> pod-d with l2enable and the dpdk block (vfio-pci, kernel_driver igbvf)
#   dpdk-deleted its DEL; files.txt
set -u
OUT=$1 SRIOVCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

WORK=$(mktemp -d /tmp/sriovkit-seed-e2e.XXXXXX)
BIN=$WORK/bin STATE=$WORK/state IPAM=$WORK/ipam
mkdir -p "$BIN" "$OUT/conf"
cat > "$OUT/conf/pf.json" <<JSON
{"cniVersion": "1.0.0", "name": "seed-net", "type": "sriov", "if0": "eth0",
 "ipam": {"type": "host-local", "subnet": "10.56.119.0/24", "dataDir": "$IPAM"}}
JSON
cat > "$OUT/conf/dpdk.json" <<JSON
{"cniVersion": "1.0.0", "name": "seed-dpdk", "type": "sriov", "master": "eth0", "l2enable": true,
 "dpdk": {"kernel_driver": "igbvf", "dpdk_driver": "vfio-pci", "dpdk_tool": "/opt/dpdk/dpdk-devbind.py"}}
JSON

files() { (cd "$STATE" && find . -path ./locks -prune -o -print) | sort > "$1/files.txt"; }

ip link set eth0 up
set_numvfs eth0 2 || exit 1
modprobe vfio-pci 2>/dev/null
for ns in pod-1 pod-2 pod-3 pod-d; do ip netns add "$ns"; done
record "$OUT/start" install-cni "$SRIOVCTL" install-cni --dest "$BIN" --agent-socket "$WORK/no-agent.sock" \
    --fallback-python "$(dirname "$SRIOVCTL")/python"
snapshot "$OUT/start"

cni "$OUT/added" add-1 ADD ctr-1 /run/netns/pod-1 "$OUT/conf/pf.json"
cni "$OUT/added" add-2 ADD ctr-2 /run/netns/pod-2 "$OUT/conf/pf.json"
cni "$OUT/added" add-3 ADD ctr-3 /run/netns/pod-3 "$OUT/conf/pf.json"
record "$OUT/added" file-1 cat "$STATE/pod-1/net1.json"
record "$OUT/added" file-2 cat "$STATE/pod-2/net1.json"
snapshot "$OUT/added"
snapshot_netns "$OUT/added" pod-1 pod-2
cni "$OUT/deleted" del-1 DEL ctr-1 /run/netns/pod-1 "$OUT/conf/pf.json"
cni "$OUT/deleted" del-2 DEL ctr-2 /run/netns/pod-2 "$OUT/conf/pf.json"
cni "$OUT/deleted" del-3 DEL ctr-3 /run/netns/pod-3 "$OUT/conf/pf.json"
settle_vfs eth0
snapshot "$OUT/deleted"
files "$OUT/deleted"

cni "$OUT/dpdk-added" add ADD ctr-d /run/netns/pod-d "$OUT/conf/dpdk.json"
record "$OUT/dpdk-added" file cat "$STATE/pod-d/net1.json"
snapshot "$OUT/dpdk-added"
cni "$OUT/dpdk-deleted" del DEL ctr-d /run/netns/pod-d "$OUT/conf/dpdk.json"
settle_vfs eth0
snapshot "$OUT/dpdk-deleted"
files "$OUT/dpdk-deleted"

for ns in pod-1 pod-2 pod-3 pod-d; do ip netns del "$ns"; done
echo 0 > /sys/class/net/eth0/device/sriov_numvfs
rm -rf "$WORK"
say "done"
