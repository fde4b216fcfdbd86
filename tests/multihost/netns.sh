# shellcheck shell=bash
# netns.sh - "hosts" made of Linux network namespaces, for the multi-host MPI tests.
#
# Source this file (bash).  Topology for N hosts (2..4):
#
#   ${MH_PREFIX}sw   switch namespace: bridge br0, ports v1..vN
#   ${MH_PREFIX}hK   host K: lo + eth0 = 10.213.0.K/24 (veth peer of vK in sw)
#
# Everything lives in namespaces created here: the root namespace gets no
# interface, route or address, so nothing outside the test subnet can be
# reached from the hosts and nothing outside can reach them.  Tearing down is
# killing the processes inside the namespaces and deleting the namespaces
# (which destroys every veth and the bridge with them).
#
# Names: MH_PREFIX = cnd-<id>-  (id = $MH_ID, default the shell's pid), so
# parallel runs do not collide; cleanup.sh removes leftovers with prefix cnd-.
#
# Functions:
#   mh_check              prints a reason and returns 1 if this cannot work here
#   mh_create N           create N hosts; writes $MH_DIR/hostfile, $MH_DIR/hosts.map
#   mh_addr K             address of host K
#   mh_ns K               namespace name of host K  (mh_ns sw: the switch)
#   mh_shape RATE [BURST] [LAT]   tbf on both ends of every link (e.g. 1gbit)
#   mh_unshape            remove the shaping
#   mh_link_down K [inside|outside]   take host K's link down (eth0 inside host
#                         namespace, or its switch port vK; default outside)
#   mh_link_up K          bring it back (both ends)
#   mh_procs              pids of all processes inside our namespaces
#   mh_kill_procs         TERM, then KILL, everything inside our namespaces
#   mh_destroy            kill, delete namespaces, remove $MH_DIR (idempotent)
#   mh_leftovers          prints what is left (namespaces, pids, dir); returns 1 if any

MH_ID=${MH_ID:-$$}
MH_PREFIX=${MH_PREFIX:-cnd-${MH_ID}-}
MH_SUBNET=${MH_SUBNET:-10.213.0}          # /24, hosts are .1 .. .N
MH_DIR=${MH_DIR:-${TMPDIR:-/tmp}/${MH_PREFIX}mh}
MH_N=0

mh_ns() { if [ "$1" = sw ]; then echo "${MH_PREFIX}sw"; else echo "${MH_PREFIX}h$1"; fi; }
mh_addr() { echo "${MH_SUBNET}.$1"; }

mh_log() { [ -n "${MH_VERBOSE:-}" ] && echo "netns: $*" >&2; return 0; }

mh_check() {
    if [ "$(id -u)" != 0 ]; then echo "not root (network namespaces need CAP_SYS_ADMIN/CAP_NET_ADMIN)"; return 1; fi
    if ! command -v ip >/dev/null 2>&1; then echo "no 'ip' command (apt-get install -y iproute2)"; return 1; fi
    if ! ip netns list >/dev/null 2>&1; then echo "'ip netns' does not work here"; return 1; fi
    local probe="${MH_PREFIX}probe" err
    if ! err=$(ip netns add "$probe" 2>&1); then echo "cannot create a network namespace: $err"; return 1; fi
    if ! err=$(ip -n "$probe" link add v0 type veth peer name v1 2>&1); then
        ip netns del "$probe" 2>/dev/null
        echo "cannot create veth pairs: $err"; return 1
    fi
    if ! err=$(ip -n "$probe" link add br0 type bridge 2>&1); then
        ip netns del "$probe" 2>/dev/null
        echo "cannot create a bridge: $err"; return 1
    fi
    ip netns del "$probe" 2>/dev/null
    return 0
}

# mh_create N
mh_create() {
    local n=$1 k sw
    if [ "$n" -lt 1 ] || [ "$n" -gt 4 ]; then echo "mh_create: 1..4 hosts" >&2; return 1; fi
    mkdir -p "$MH_DIR" || return 1
    sw=$(mh_ns sw)
    ip netns add "$sw" || return 1
    ip -n "$sw" link add br0 type bridge || return 1
    ip -n "$sw" link set br0 up || return 1
    : > "$MH_DIR/hostfile"
    : > "$MH_DIR/hosts.map"
    for k in $(seq 1 "$n"); do
        local ns; ns=$(mh_ns "$k")
        ip netns add "$ns" || return 1
        ip -n "$ns" link set lo up || return 1
        ip -n "$sw" link add "v$k" type veth peer name eth0 netns "$ns" || return 1
        ip -n "$sw" link set "v$k" master br0 || return 1
        ip -n "$sw" link set "v$k" up || return 1
        ip -n "$ns" addr add "$(mh_addr "$k")/24" dev eth0 || return 1
        ip -n "$ns" link set eth0 up || return 1
        echo "$(mh_addr "$k") slots=4" >> "$MH_DIR/hostfile"
        echo "$(mh_addr "$k") $ns" >> "$MH_DIR/hosts.map"
    done
    MH_N=$n
    mh_log "created $n hosts ($MH_PREFIX*), map $MH_DIR/hosts.map"
}

# mh_shape RATE [BURST] [LATENCY]  - token bucket on both ends of every link
mh_shape() {
    local rate=$1 burst=${2:-256kb} lat=${3:-50ms} k sw; sw=$(mh_ns sw)
    for k in $(seq 1 "$MH_N"); do
        ip netns exec "$(mh_ns "$k")" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency "$lat" || return 1
        ip netns exec "$sw" tc qdisc replace dev "v$k" root tbf rate "$rate" burst "$burst" latency "$lat" || return 1
    done
    mh_log "links shaped: tbf rate $rate burst $burst latency $lat"
}

mh_unshape() {
    local k sw; sw=$(mh_ns sw)
    for k in $(seq 1 "$MH_N"); do
        ip netns exec "$(mh_ns "$k")" tc qdisc del dev eth0 root 2>/dev/null
        ip netns exec "$sw" tc qdisc del dev "v$k" root 2>/dev/null
    done
    return 0
}

# mh_link_down K [inside|outside]
mh_link_down() {
    local k=$1 where=${2:-outside}
    if [ "$where" = inside ]; then ip -n "$(mh_ns "$k")" link set eth0 down
    else ip -n "$(mh_ns sw)" link set "v$k" down; fi
}

# Brings host K's link back and waits (up to 5 s) until both ends report carrier,
# then forgets neighbour entries that went stale or FAILED while it was down: a
# job started right after must not meet ARP retries and TCP SYN back-off to K.
mh_link_up() {
    local k=$1 i ns
    ip -n "$(mh_ns sw)" link set "v$k" up && ip -n "$(mh_ns "$k")" link set eth0 up || return 1
    for i in $(seq 1 50); do
        ip -n "$(mh_ns "$k")" link show eth0 | grep -q 'state UP' &&
            ip -n "$(mh_ns sw)" link show "v$k" | grep -q 'state UP' && break
        sleep 0.1
    done
    for ns in $(mh_list_ns); do ip -n "$ns" neigh flush all 2>/dev/null; done
    return 0
}

# Our namespaces (any, also from an earlier failed step of this run).
mh_list_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -F -- "$MH_PREFIX" | grep "^${MH_PREFIX}" ; }

mh_procs() {
    local ns
    for ns in $(mh_list_ns); do ip netns pids "$ns" 2>/dev/null; done
}

mh_kill_procs() {
    local pids i
    pids=$(mh_procs)
    [ -z "$pids" ] && return 0
    mh_log "killing $(echo $pids)"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(mh_procs); [ -z "$pids" ] && return 0
        sleep 0.2
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(mh_procs); [ -z "$pids" ] && return 0
        sleep 0.2
    done
    echo "netns: processes survive SIGKILL: $pids" >&2
    return 1
}

mh_destroy() {
    local ns
    mh_kill_procs
    for ns in $(mh_list_ns); do ip netns del "$ns" 2>/dev/null || echo "netns: cannot delete $ns" >&2; done
    [ -n "$MH_DIR" ] && case "$MH_DIR" in */cnd-*-mh) rm -rf "$MH_DIR" ;; esac
    MH_N=0
    return 0
}

mh_leftovers() {
    local out=""
    out+=$(mh_list_ns | sed 's/^/namespace /')
    local p; p=$(mh_procs); [ -n "$p" ] && out+=$'\n'"processes $(echo $p)"
    [ -d "$MH_DIR" ] && out+=$'\n'"directory $MH_DIR"
    out=$(echo "$out" | sed '/^$/d')
    if [ -n "$out" ]; then echo "$out"; return 1; fi
    return 0
}
