#!/bin/sh
# cleanup.sh - remove leftovers of tests/multihost runs that were killed hard
# (kill -9, machine crash): network namespaces named cnd-* (and every process
# still running inside them; deleting a namespace removes its veths and bridge),
# and their work directories ${TMPDIR:-/tmp}/cnd-*-mh.
#
#   tests/multihost/cleanup.sh [PREFIX]     PREFIX defaults to "cnd-"
#
# Leaves alone namespaces of runs that are still alive (cnd-<pid>- where <pid>
# is a running run.sh) unless --force is given.
set -u
force=0
[ "${1:-}" = --force ] && { force=1; shift; }
prefix=${1:-cnd-}
case "$prefix" in cnd-*) ;; *) echo "cleanup.sh: prefix must start with cnd-" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then echo "cleanup.sh: needs root" >&2; exit 1; fi

alive() {   # alive ID: is the run.sh that owns cnd-ID- still running?
    [ "$force" = 1 ] && return 1
    case "$1" in *[!0-9]*|'') return 1 ;; esac
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q 'multihost/run.sh'
}

n=0
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix"); do
    id=$(echo "$ns" | sed -n 's/^cnd-\([^-]*\)-.*/\1/p')
    if alive "$id"; then echo "cleanup.sh: $ns belongs to running run.sh $id, kept"; continue; fi
    pids=$(ip netns pids "$ns" 2>/dev/null)
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
        sleep 0.2
    fi
    ip netns del "$ns" && n=$((n + 1)) && echo "cleanup.sh: removed namespace $ns${pids:+ (killed $(echo $pids))}"
done
for d in "${TMPDIR:-/tmp}"/"$prefix"*-mh; do
    [ -d "$d" ] || continue
    id=$(basename "$d" | sed -n 's/^cnd-\([^-]*\)-.*/\1/p')
    alive "$id" && continue
    rm -rf "$d" && echo "cleanup.sh: removed $d"
done
echo "cleanup.sh: $n namespaces removed"
