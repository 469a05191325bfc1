#!/bin/bash
# Guest side of tests/e2e/test_provision.py (issue 9 on real igb/igbvf/vfio-pci).
#   provision.sh OUT_DIR SRIOVCTL
# Applies policies in turn with `sriovctl provision` and records the kernel's view after each.
# Leaves eth0 at 0 VFs and without the default route it adds.
set -u
OUT=$1 SRIOVCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$HERE/../data
. "$HERE/lib.sh"
provision() { local step=$1 name=$2; shift 2; record "$OUT/$step" "$name" "$SRIOVCTL" provision --host-root / "$@"; }

ip link set eth0 up
snapshot "$OUT/start"

# 1. 0 -> 4 VFs, two of them on vfio-pci; then the same policy again
provision four plan --policy "$DATA/policy-4vfs.yaml" --dry-run -o json
provision four apply --policy "$DATA/policy-4vfs.yaml"
snapshot "$OUT/four"
provision four again --policy "$DATA/policy-4vfs.yaml"

# 2. down to 2 VFs while a pod holds VF 3: refused, nothing changes; then without the pod
provision refused apply --policy "$DATA/policy-2vfs.yaml" --allocated "$(vf_addr eth0 3)"
snapshot "$OUT/refused"
provision two apply --policy "$DATA/policy-2vfs.yaml"
snapshot "$OUT/two"

# 3. VF 0 leaves the vfio-pci range: back to its own driver (no VF count change)
provision restored apply --policy "$DATA/policy-2vfs-kernel.json"
snapshot "$OUT/restored"

# 4. eth0 carries the default route: a change to it is refused
ip addr add 10.99.0.1/24 dev eth0
ip route add default via 10.99.0.254 dev eth0
provision default-route apply --policy "$DATA/policy-4vfs.yaml"
snapshot "$OUT/default-route"
ip route del default via 10.99.0.254 dev eth0
ip addr del 10.99.0.1/24 dev eth0

echo 0 > /sys/class/net/eth0/device/sriov_numvfs
say "done"
