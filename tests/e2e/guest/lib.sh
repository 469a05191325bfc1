# Sourced by the guest-side scenario scripts (runs INSIDE the vmlab guest, busybox-free: the
# guest sees the host's / read-only, so bash, coreutils and iproute2 are the host's).
#
# The scripts only set the kernel up and record what it reports; every assertion is made on
# the host by tests/e2e/test_*.py, from the files written here:
#   <step>/sysfs.json      every network-class PCI function: ids, driver, iommu group, numa,
#                          netdevs, driver_override, SR-IOV links (raw kernel values)
#   <step>/ip-link.json    `ip -d -j link show`
#   <step>/dev-vfio.txt    `ls /dev/vfio`
#   <step>/<name>.json     stdout of an sriovctl command, <name>.err its stderr, <name>.rc its status
# plus a line per action on stdout (the guest's evidence, printed by a failing test).

say() { printf '[guest %s] %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }

pci_dir() { echo "/sys/bus/pci/devices/$1"; }

pf_dir() { readlink -f "/sys/class/net/$1/device"; }

link_or_null() { if [ -e "$1" ]; then printf '"%s"' "$(basename "$(readlink -f "$1")")"; else printf null; fi; }

# One PCI function as a JSON object member (values are sysfs tokens: no quoting needed).
# Forks once (one readlink for every link): under TCG each fork+exec costs tens of ms, and a
# snapshot of a dozen functions made with a `cat` per attribute took 5-25 s.
device_json() {
    local d=/sys/bus/pci/devices/$1 vendor="" device="" class="" numa="" override="" l i=0 line
    read -r vendor < "$d/vendor"; read -r device < "$d/device"; read -r class < "$d/class"
    [ -e "$d/numa_node" ] && read -r numa < "$d/numa_node"
    [ -e "$d/driver_override" ] && read -r override < "$d/driver_override"
    local -a names=() paths=()
    for l in driver iommu_group physfn "$d"/virtfn*; do
        l=${l##*/}
        [ -e "$d/$l" ] && { names+=("$l"); paths+=("$d/$l"); }
    done
    local -A to=()
    if [ ${#paths[@]} -gt 0 ]; then
        # a here-string, not < <(...): the guest has no /dev/fd for process substitution
        while read -r line; do to[${names[$i]}]=${line##*/}; i=$((i + 1)); done <<< "$(readlink -f "${paths[@]}")"
    fi
    local -A js=([driver]=null [iommu_group]=null [physfn]=null)  # JSON string or null, no subshell
    for l in "${!js[@]}"; do [ -n "${to[$l]:-}" ] && js[$l]="\"${to[$l]}\""; done
    printf '"%s": {"vendor": "%s", "device": "%s", "class": "%s"' "$1" "$vendor" "$device" "$class"
    printf ', "driver": %s, "iommu_group": %s' "${js[driver]}" "${js[iommu_group]}"
    printf ', "numa_node": "%s", "driver_override": "%s"' "$numa" "$override"
    local net="" sep="" n
    for n in "$d"/net/*; do [ -e "$n" ] && { net+="$sep\"${n##*/}\""; sep=","; }; done
    printf ', "net": [%s]' "$net"
    printf ', "physfn": %s' "${js[physfn]}"
    if [ -e "$d/sriov_totalvfs" ]; then
        local total="" num="" v
        read -r total < "$d/sriov_totalvfs"; read -r num < "$d/sriov_numvfs"
        printf ', "sriov_totalvfs": "%s", "sriov_numvfs": "%s", "virtfn": {' "$total" "$num"
        sep=""
        for v in "${names[@]}"; do
            case $v in virtfn*) printf '%s"%s": "%s"' "$sep" "${v#virtfn}" "${to[$v]}"; sep=", " ;; esac
        done
        printf '}'
    fi
    printf '}'
}

# Record the kernel's view into directory $1.
snapshot() {
    local out=$1 sep="" a class f
    mkdir -p "$out"
    {
        printf '{'
        for a in /sys/bus/pci/devices/*; do
            read -r class < "$a/class"
            case $class in 0x02*) ;; *) continue ;; esac
            printf '%s' "$sep"; device_json "${a##*/}"; sep=", "
        done
        printf '}\n'
    } > "$out/sysfs.json"
    ip -d -j link show > "$out/ip-link.json"
    for f in /dev/vfio/*; do [ -e "$f" ] && echo "${f##*/}"; done > "$out/dev-vfio.txt"
    say "snapshot ${out##*/}"
}

# Run a command, keeping stdout/stderr/status as <dir>/<name>.{json,err,rc}; never fails.
record() {
    local out=$1 name=$2; shift 2
    mkdir -p "$out"
    "$@" > "$out/$name.json" 2> "$out/$name.err"
    local rc=$?
    echo $rc > "$out/$name.rc"
    say "$name: rc=$rc $*"
    [ $rc = 0 ] || sed 's/^/    /' "$out/$name.err"
}

# Wait (bounded) until every VF of PF netdev $1 has a driver and, if it is a netdev driver, a netdev.
settle_vfs() {
    local pf; pf=$(pf_dir "$1")
    local i v
    for i in $(seq 50); do
        local ready=1
        for v in "$pf"/virtfn*; do
            [ -e "$v" ] || continue
            [ -e "$v/driver" ] || ready=0
            [ "$(basename "$(readlink -f "$v/driver" 2>/dev/null)")" != igbvf ] || [ -d "$v/net" ] || ready=0
        done
        [ $ready = 1 ] && return 0
        sleep 0.2
    done
    say "VFs of $1 did not settle"
    return 1
}

set_numvfs() {
    local pf=$1 n=$2
    echo "$n" > "/sys/class/net/$pf/device/sriov_numvfs" || { say "sriov_numvfs=$n on $pf refused"; return 1; }
    settle_vfs "$pf"
    say "$pf: sriov_numvfs=$(cat "/sys/class/net/$pf/device/sriov_numvfs")"
}

# Test set-up only (the product does this through sriovkit.provision): rebind a VF.
bind_driver() {
    local addr=$1 drv=$2 d; d=$(pci_dir "$1")
    echo "$drv" > "$d/driver_override"
    [ -e "$d/driver" ] && echo "$addr" > "$d/driver/unbind"
    echo "$addr" > /sys/bus/pci/drivers_probe
    say "$addr: driver now $(basename "$(readlink -f "$d/driver")")"
}

vf_addr() { basename "$(readlink -f "$(pf_dir "$1")/virtfn$2")"; }

# Record what network namespace $2.. show, into $1/netns/<ns>/:
#   ip-link.json  `ip -d -j link show` in the namespace     addr.json  `ip -j addr show`
#   route.json    `ip -j route show`                        sysfs.json {ifname: {device, address}}
#                 from the namespace's own sysfs (the PCI function behind each interface, its MAC)
# A namespace that does not exist (any more) leaves its directory empty.
snapshot_netns() {
    local out=$1 ns; shift
    for ns in "$@"; do
        mkdir -p "$out/netns/$ns"
        [ -e "/run/netns/$ns" ] || { say "netns $ns: absent"; continue; }
        ip -n "$ns" -d -j link show > "$out/netns/$ns/ip-link.json"
        ip -n "$ns" -j addr show > "$out/netns/$ns/addr.json"
        ip -n "$ns" -j route show > "$out/netns/$ns/route.json"
        # `ip netns exec` mounts a sysfs of that namespace: /sys/class/net lists its interfaces
        ip netns exec "$ns" bash -c "$(declare -f link_or_null)"'
            printf "{"; sep=""
            for n in /sys/class/net/*; do
                printf "%s\"%s\": {\"device\": %s, \"address\": \"%s\"}" "$sep" "${n##*/}" \
                    "$(link_or_null "$n/device")" "$(cat "$n/address")"
                sep=", "
            done
            printf "}\n"' > "$out/netns/$ns/sysfs.json"
        say "snapshot $(basename "$out") netns $ns: $(ip -n "$ns" -br link show | awk '{print $1}' | paste -sd' ' -)"
    done
}

# Wait (bounded, $2 seconds) until PCI function $1 has a network interface in this namespace.
wait_netdev() {
    local d; d=$(pci_dir "$1")
    local i
    for i in $(seq $(( $2 * 10 ))); do
        [ -n "$(ls "$d/net" 2>/dev/null)" ] && { say "$1: interface $(ls "$d/net") after ~$(( (i - 1) * 100 ))ms"; return 0; }
        sleep 0.1
    done
    say "$1: no interface in the host after $2 s"
    return 1
}

# The CNI scenarios' calls (cni.sh, seed.sh, attack.sh); they use the script's $OUT, $DATA, $BIN
# (where the shim is installed), $STATE (the CNI state dir) and $IPAM (host-local's data dir).

# conf TEMPLATE DEVICE [MAC]: data/cni-TEMPLATE.json filled in; prints the file's path
conf() {
    local path="$OUT/conf/$1-$2.json"
    sed -e "s|@DEVICE@|$2|" -e "s|@MAC@|${3:-}|" -e "s|@IPAMDIR@|$IPAM|" "$DATA/cni-$1.json" > "$path"
    echo "$path"
}

# cni STEP NAME COMMAND CONTAINER_ID NETNS CONF: one plugin call through the shim, as a runtime
# makes it; stdout (result or error JSON) -> STEP/NAME.json, stderr -> .err, status -> .rc
cni() {
    local out=$1 name=$2 command=$3 id=$4 netns=$5 conf=$6
    record "$out" "$name" env CNI_COMMAND="$command" CNI_CONTAINERID="$id" CNI_NETNS="$netns" \
        CNI_IFNAME=net1 CNI_PATH="$BIN:/usr/lib/cni" SRIOVKIT_CNI_STATE_DIR="$STATE" "$BIN/sriov" < "$conf"
}

# state_files STEP: the CNI state dir's records -> STEP/state-files.txt
state_files() { find "$STATE" -name '*.json' 2>/dev/null | sed "s|$STATE/||" | sort > "$1/state-files.txt"; }
