#!/bin/sh
# agent.sh - rsh agent for Open MPI that "logs in" to a network-namespace host.
#
#   mpirun --mca plm_rsh_agent tests/multihost/agent.sh ...
#
# Open MPI calls it like ssh:  agent.sh [-options] HOST command words...
# It looks HOST up in the map file $CND_MH_MAP (lines "ADDRESS NAMESPACE",
# written by netns.sh mh_create) and runs
#
#   ip netns exec NAMESPACE unshare --uts sh -c 'hostname NAMESPACE; command words...'
#
# The UTS namespace gives each host its own hostname, so Open MPI sees N
# different nodes (otherwise every "host" reports the same gethostname()).
# Only hosts listed in the map are accepted; anything else is an error, so the
# agent can never be used to reach an address outside the test subnet.
set -u
while [ $# -gt 0 ]; do
    case "$1" in
        -*) shift ;;            # ignore ssh-style options
        *) break ;;
    esac
done
if [ $# -lt 2 ]; then echo "agent.sh: usage: agent.sh HOST command..." >&2; exit 255; fi
host=$1; shift
map=${CND_MH_MAP:-}
if [ -z "$map" ] || [ ! -r "$map" ]; then echo "agent.sh: CND_MH_MAP not set or unreadable" >&2; exit 255; fi
ns=$(awk -v h="$host" '$1 == h { print $2; exit }' "$map")
if [ -z "$ns" ]; then echo "agent.sh: host $host is not a test host (see $map)" >&2; exit 255; fi
[ -n "${CND_MH_AGENT_LOG:-}" ] && echo "agent: $host -> $ns: $*" >> "$CND_MH_AGENT_LOG"
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns && $*"
