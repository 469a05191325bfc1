#!/bin/bash
# Guest side of tests/e2e/test_deviceplugin.py (scenarios 2 and 7 on real igb VFs, 2 PFs).
#   deviceplugin.sh OUT_DIR SRIOVCTL
# eth0: 6 VFs, VF 3 on vfio-pci; eth1: 4 VFs. Then one Python process runs the
# kubelet simulator and the agent's device plugins and records what the kubelet sees
# (guest/dp_scenario.py). Leaves every PF at 0 VFs.
set -u
OUT=$1 SRIOVCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$HERE/../data
. "$HERE/lib.sh"
PY=$(dirname "$SRIOVCTL")/python

ip link set eth0 up; ip link set eth1 up
set_numvfs eth0 6 || exit 1
set_numvfs eth1 4 || exit 1
bind_driver "$(vf_addr eth0 3)" vfio-pci
snapshot "$OUT/start"
"$PY" "$HERE/dp_scenario.py" "$OUT" "$DATA/dp-agent.json"
rc=$?
snapshot "$OUT/end"
for pf in eth0 eth1; do echo 0 > "/sys/class/net/$pf/device/sriov_numvfs"; done
say "done rc=$rc"
exit $rc
