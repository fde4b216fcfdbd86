# shellcheck shell=bash
# cluster.sh - a throw-away Slurm cluster on this machine, for tests/slurm/run.sh.
#
# Source it (bash) after tests/multihost/netns.sh. sl_start N makes N namespace hosts
# (netns.sh: 10.213.0.1..N behind one bridge) and starts, all configured from scratch
# under $SL_DIR (inside $MH_DIR, removed with it), no systemd, no file outside it:
#   munged      one, in the root namespace, with a key generated in $SL_DIR; its socket
#               is a file, so the daemons in every namespace reach it
#   slurmctld   in host 1 (SlurmctldHost = this machine's name at 10.213.0.1)
#   slurmd      one per host, NodeName nK at 10.213.0.K (slurmd -N nK), CPUs = this
#               machine's cores (every "node" is the same CPUs)
# Clients run in host 1 through sl (sl sbatch ..., sl scontrol ...) with SLURM_CONF set.
# sl_stop kills the daemons (and everything in the namespaces) and removes it all.
#
# Functions: sl_check (reason, 1 when it cannot work here), sl_start N, sl_stop, sl CMD...,
# sl_wait_idle SECONDS (every node idle), sl_job_state ID, sl_wait_state ID STATE... SECONDS.

SL_DIR=""
SL_MUNGED_PID=""
SL_PORT_CTLD=${SL_PORT_CTLD:-6817}
SL_PORT_SLURMD=${SL_PORT_SLURMD:-6818}

sl_check() {
    local c
    for c in munged mungekey slurmctld slurmd sbatch scontrol srun squeue scancel; do
        command -v "$c" >/dev/null 2>&1 || { echo "'$c' not found (apt-get install -y slurm-wlm munge)"; return 1; }
    done
    [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] || [ -e /usr/lib/slurm/mpi_pmix.so ] ||
        { echo "Slurm's mpi_pmix plugin not found (apt-get install -y slurm-wlm-basic-plugins)"; return 1; }
    return 0
}

sl() { ip netns exec "$(mh_ns 1)" env SLURM_CONF="$SL_DIR/slurm.conf" "$@"; }

sl_write_conf() {
    local n=$1 cores k
    cores=$(nproc)
    cat > "$SL_DIR/slurm.conf" <<EOF
# written by tests/slurm/cluster.sh for one test run
ClusterName=cndtest
SlurmctldHost=n1($(mh_addr 1))
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$SL_PORT_CTLD
SlurmdPort=$SL_PORT_SLURMD
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SL_DIR/munge.socket
StateSaveLocation=$SL_DIR/ctld
SlurmdSpoolDir=$SL_DIR/spool-%n
SlurmctldPidFile=$SL_DIR/slurmctld.pid
SlurmdPidFile=$SL_DIR/slurmd-%n.pid
SlurmctldLogFile=$SL_DIR/slurmctld.log
SlurmdLogFile=$SL_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobRequeue=1
KillWait=30
MinJobAge=600
InactiveLimit=0
OverTimeLimit=0
MessageTimeout=20
SlurmdTimeout=60
SlurmctldTimeout=60
TmpFS=$SL_DIR/tmp
EOF
    # slurmd always starts a cgroup plugin (22.05), even with proctrack/linuxproc and task/none:
    # v1 where /sys/fs/cgroup is v1 controllers on a tmpfs, else autodetect
    if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ]; then
        printf 'CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nCgroupAutomount=no\n' > "$SL_DIR/cgroup.conf"
    else
        printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\n' > "$SL_DIR/cgroup.conf"
    fi
    for k in $(seq 1 "$n"); do
        mkdir -p "$SL_DIR/spool-n$k"
        echo "NodeName=n$k NodeAddr=$(mh_addr "$k") CPUs=$cores State=UNKNOWN" >> "$SL_DIR/slurm.conf"
    done
    echo "PartitionName=test Nodes=n[1-$n] Default=YES MaxTime=INFINITE State=UP" >> "$SL_DIR/slurm.conf"
}

sl_start() {
    local n=$1 k i
    mh_create "$n" || return 1
    SL_DIR=$MH_DIR/slurm
    mkdir -p "$SL_DIR/ctld" "$SL_DIR/tmp" || return 1
    chmod 700 "$SL_DIR"
    # munge: a fresh key, its own socket, pid, log and seed files
    mungekey -c -k "$SL_DIR/munge.key" -b 1024 >/dev/null 2>&1 ||
        dd if=/dev/urandom of="$SL_DIR/munge.key" bs=1024 count=1 2>/dev/null
    chmod 600 "$SL_DIR/munge.key"
    munged -F -f --key-file="$SL_DIR/munge.key" --socket="$SL_DIR/munge.socket" \
        --pid-file="$SL_DIR/munged.pid" --log-file="$SL_DIR/munged.log" \
        --seed-file="$SL_DIR/munged.seed" > "$SL_DIR/munged.out" 2>&1 &
    SL_MUNGED_PID=$!
    for i in $(seq 1 50); do [ -S "$SL_DIR/munge.socket" ] && break; sleep 0.1; done
    [ -S "$SL_DIR/munge.socket" ] || { echo "munged did not start: $(tail -n 3 "$SL_DIR/munged.log" "$SL_DIR/munged.out" 2>/dev/null)"; return 1; }
    sl_write_conf "$n"
    # Each daemon has its host's name (own UTS namespace: Open MPI names its session
    # directories by host name) and each slurmd its own TmpFS (a private bind mount: Slurm's
    # PMIx plugin makes per-step directories there named by job and step only).
    ip netns exec "$(mh_ns 1)" unshare -u sh -c 'hostname n1 && exec "$@"' sh \
        slurmctld -D -i -f "$SL_DIR/slurm.conf" > "$SL_DIR/slurmctld.out" 2>&1 &
    for k in $(seq 1 "$n"); do
        mkdir -p "$SL_DIR/tmp-n$k"
        ip netns exec "$(mh_ns "$k")" unshare -u -m --propagation private sh -c \
            'hostname "$0" && mount --bind "$1" "$2" && shift 2 && exec "$@"' "n$k" "$SL_DIR/tmp-n$k" "$SL_DIR/tmp" \
            slurmd -D -N "n$k" -f "$SL_DIR/slurm.conf" > "$SL_DIR/slurmd-n$k.out" 2>&1 &
    done
    sl_wait_idle 60 || { echo "nodes not idle after 60 s: $(sl sinfo -h -N -o '%N %T' 2>&1 | tr '\n' ' ')"; return 1; }
}

# every node idle (and slurmctld answering)
sl_wait_idle() {
    local t=$1 i out
    for i in $(seq 1 $((t * 5))); do
        out=$(sl sinfo -h -N -o '%T' 2>/dev/null | sort -u)
        [ "$out" = idle ] && return 0
        sleep 0.2
    done
    return 1
}

sl_job_state() { sl scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1; }

# sl_wait_state ID SECONDS STATE...: 0 when the job reaches one of the states
sl_wait_state() {
    local id=$1 t=$2 i s; shift 2
    for i in $(seq 1 $((t * 5))); do
        s=$(sl_job_state "$id")
        for want in "$@"; do [ "$s" = "$want" ] && return 0; done
        sleep 0.2
    done
    return 1
}

sl_stop() {
    # the daemons first (so that nothing restarts job steps), then everything else in the
    # namespaces, then munged, then the namespaces and $MH_DIR
    local p
    for p in $(mh_procs); do
        case "$(cat "/proc/$p/comm" 2>/dev/null)" in slurmctld|slurmd) kill -TERM "$p" 2>/dev/null ;; esac
    done
    sleep 0.5
    mh_kill_procs >/dev/null 2>&1
    # munged: by the pid we started, else by its own pid file (a caller in a subshell)
    [ -z "$SL_MUNGED_PID" ] && [ -n "$SL_DIR" ] && SL_MUNGED_PID=$(cat "$SL_DIR/munged.pid" 2>/dev/null)
    if [ -n "$SL_MUNGED_PID" ]; then
        kill -TERM "$SL_MUNGED_PID" 2>/dev/null
        wait "$SL_MUNGED_PID" 2>/dev/null
        SL_MUNGED_PID=""
    fi
    mh_destroy
}
