#!/bin/bash
# run.sh - multi-host MPI tests over Linux network namespaces (one machine, TCP).
#
#   tests/multihost/run.sh [--quick] [--hosts "2 3"] [--only LIST] [-v]
#
#   --quick      what `make test` runs (well under a minute): smoke equality on
#                2 and 3 hosts, bandwidth (1 run each), link-down with the
#                keepalive settings, trainer tests if ./convnet-dist exists
#   (default)    also: 3 bandwidth runs per host count + ring algorithm, and the
#                link-down observations (plain Open MPI, application watchdog
#                with/without short keepalives), each bounded by timeout (~3 min)
#   --hosts L    host counts to test, each 2..4 (default "2 3")
#   --only L     comma list of: smoke,bandwidth,linkdown,trainer,launcher,timeline
#                (launcher: convnet-run over namespace hosts, launcher.sh; it
#                makes 4 hosts whatever --hosts says; timeline: `train --timeline`
#                on 2 hosts at 1 Gbit/s, after the backward and overlapped,
#                checked by tests/timeline_check.py; in the full run, not --quick)
#   -v           verbose (netns steps, full mpirun output on failure)
#
# Needs root (network namespaces).  Without it prints "SKIP multihost: <reason>"
# and exits 77.  Everything it creates is named cnd-<pid>-*; all of it is removed
# on exit, also on failure or Ctrl-C (tests/multihost/cleanup.sh removes
# leftovers of killed runs).  Only addresses 10.213.0.1..N inside the test
# namespaces are ever contacted; the root namespace gets no interface at all.
#
# Environment (trainer and launcher parts; all optional):
#   CND_MH_BIN             trainer binary (default ./convnet-dist)
#   CND_MH_JOB             job file (default jobs/mnist.job)
#   CND_MH_TRAIN_ARGS      extra trainer arguments (default "--set train.steps_per_epoch=20
#                          --set train.conv_algorithm=direct": runs compared weight by weight
#                          must not let `auto` time its choice anew in each;
#                          set it empty for full epochs)
#   CND_MH_TRAIN_TIMEOUT   seconds per training run (default 120)
#   CND_MH_COLLECTIVE_TIMEOUT  watchdog for the link-down run (default 2; keep it
#                          below the ~5 s the runtime keepalives need, see below)
#   CND_MH_PROGRESS_RE     regex in trainer output meaning "training is running"
#                          (default 'loss|step|epoch|batch', case-insensitive)
#   CND_MH_TIMEOUT         seconds per smoke mpirun (default 60)
#   CND_MH_LINKDOWN_WHERE  outside (switch port, default) or inside (host's eth0)
#   CND_MH_LINKDOWN_VARIANTS  observations of the full run (see test_linkdown)
#   CND_MH_TIMELINE_OUT    folder that keeps the timeline part's traces
#                          (timeline-after.json, timeline-overlap.json; default: removed)
#   CND_MH_TIMELINE_LAYERS the layers whose backward the trace must hold (default: every
#                          layer `summary` lists)
#
# Last line: "N passed, M failed, K skipped".  Exit 1 on any failure, 77 when
# everything was skipped, 0 otherwise.

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 1

QUICK=0
HOSTS="2 3"
ONLY="smoke,bandwidth,linkdown,trainer,launcher"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --hosts) HOSTS=$2; shift ;;
        --only) ONLY=$2; ONLY_GIVEN=1; shift ;;
        -v) export MH_VERBOSE=1 ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$QUICK" = 0 ] && [ -z "${ONLY_GIVEN:-}" ] && ONLY="$ONLY,timeline"
want() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

# ---------------------------------------------------------------- bookkeeping
PASSED=0 FAILED=0 SKIPPED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $1: $2"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP $1: $2"; }
info() { echo "     $*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
summary() { echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"; }

SMOKE_TIMEOUT=${CND_MH_TIMEOUT:-60}
MAXH=0
for n in $HOSTS; do
    case "$n" in 2|3|4) ;; *) echo "run.sh: host counts must be 2..4" >&2; exit 2 ;; esac
    [ "$n" -gt "$MAXH" ] && MAXH=$n
done

# -------------------------------------------------------------- prerequisites
# shellcheck source=netns.sh
. "$HERE/netns.sh"

skip_all() { echo "SKIP multihost: $1"; exit 77; }
reason=$(mh_check) || skip_all "$reason"
for c in mpirun mpicc timeout unshare tc awk; do
    command -v "$c" >/dev/null 2>&1 || skip_all "'$c' not found"
done

BG_PIDS=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in $BG_PIDS; do kill "$p" 2>/dev/null; done
    mh_destroy
    local left
    if ! left=$(mh_leftovers); then echo "run.sh: left behind after cleanup: $left" >&2; rc=1; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

# ------------------------------------------------------------------ the build
BUILD=$ROOT/build/multihost
SMOKE=$BUILD/mpi_smoke
mkdir -p "$BUILD"
if [ ! -x "$SMOKE" ] || [ "$HERE/mpi_smoke.c" -nt "$SMOKE" ]; then
    if ! out=$(mpicc -O2 -std=c11 -pthread -Wall -Wextra -o "$SMOKE" "$HERE/mpi_smoke.c" 2>&1); then
        fail build "mpicc tests/multihost/mpi_smoke.c: $out"
        summary; exit 1
    fi
fi

# ------------------------------------------------------------------- the hosts
# setup_hosts: (re)create the MAXH hosts, hostfile.N for each N, Open MPI tmp dir
NCREATE=$MAXH
want launcher && NCREATE=4
setup_hosts() {
    mh_create "$NCREATE" || return 1
    local n
    for n in $(seq 1 "$NCREATE"); do head -n "$n" "$MH_DIR/hostfile" > "$MH_DIR/hostfile.$n"; done
    mkdir -p "$MH_DIR/tmp"
}
# reset_hosts: fresh namespaces (no state from an aborted job carries over)
reset_hosts() { mh_destroy; setup_hosts; }
if ! setup_hosts; then
    fail setup "cannot create $MAXH namespace hosts"
    summary; exit 1
fi
export CND_MH_MAP=$MH_DIR/hosts.map
# default checkpoints (runs/<job name>/) of the trainer runs go under $MH_DIR, removed with it
export CONVNET_RUNS=$MH_DIR/runs
export CND_MH_AGENT_LOG=$MH_DIR/agent.log
HEAD_NS=$(mh_ns 1)
HEAD_ADDR=$(mh_addr 1)
SUBNET_CIDR=${MH_SUBNET}.0/24

# Open MPI over TCP between the namespaces.  mpirun itself runs in host 1
# (with its own UTS namespace, hostname = namespace name); the others are
# reached through agent.sh.
MPI_FLAGS=(
    --bind-to none                      # every "host" is the same CPUs
    --mca plm_rsh_agent "$HERE/agent.sh"
    --mca plm_rsh_no_tree_spawn 1
    --mca pml ob1                       # not UCX: it would bypass the btl selection
    --mca btl tcp,self                  # no shared memory between "hosts"
    --mca btl_tcp_if_include "$SUBNET_CIDR"
    --mca oob_tcp_if_include "$SUBNET_CIDR"
)
[ "$(id -u)" = 0 ] && MPI_FLAGS=(--allow-run-as-root "${MPI_FLAGS[@]}")
# Fast detection of a lost host by the runtime (defaults: 300 s + 9 x 20 s).
KEEPALIVE_FLAGS=(--mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3)

# mh_mpirun TIMEOUT mpirun-args...   (stdin closed; run in the head namespace)
mh_mpirun() {
    local t=$1; shift
    # TMPDIR: Open MPI's session directories go under $MH_DIR (removed with it)
    TMPDIR=$MH_DIR/tmp timeout -k 5 "$t" ip netns exec "$HEAD_NS" unshare --uts \
        sh -c 'hostname "$0" && exec "$@"' "$HEAD_NS" \
        mpirun "${MPI_FLAGS[@]}" "$@" </dev/null
}
# on N hosts, one rank each / N ranks on host 1
multi_args() { echo "--hostfile $MH_DIR/hostfile.$1 -np $1 --map-by node"; }
local_args() { echo "--host $HEAD_ADDR:$1 -np $1"; }

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" | head -n 1; }

# run the smoke program; sets SM_RC, SM_OUT (file), SM_LINE (the SMOKE line)
smoke() {
    local tag=$1; shift
    SM_OUT=$MH_DIR/$tag.out
    # shellcheck disable=SC2046
    mh_mpirun "$SMOKE_TIMEOUT" "$@" > "$SM_OUT" 2>&1
    SM_RC=$?
    SM_LINE=$(grep '^SMOKE ' "$SM_OUT" | head -n 1)
    mh_kill_procs >/dev/null 2>&1
}
show_out() {   # last lines of a job's output (progress lines end in \r)
    if [ -n "${MH_VERBOSE:-}" ]; then tr '\r' '\n' < "$1" | sed 's/^/       | /'
    else tr '\r' '\n' < "$1" | sed '/^ *$/d' | tail -n 8 | cut -c1-200 | sed 's/^/       | /'; fi
}

# ---------------------------------------------------------- (a) smoke equality
test_smoke() {
    local n m_line l_line
    for n in $HOSTS; do
        local name="smoke-${n}hosts"
        # shellcheck disable=SC2046
        smoke "$name-multi" $(multi_args "$n") "$SMOKE" --reps 3
        m_line=$SM_LINE
        if [ "$SM_RC" != 0 ] || [ -z "$m_line" ]; then
            fail "$name" "mpirun on $n hosts exited $SM_RC"; show_out "$SM_OUT"; continue
        fi
        # shellcheck disable=SC2046
        smoke "$name-local" $(local_args "$n") "$SMOKE" --reps 3
        l_line=$SM_LINE
        if [ "$SM_RC" != 0 ] || [ -z "$l_line" ]; then
            fail "$name" "mpirun with $n ranks on one host exited $SM_RC"; show_out "$SM_OUT"; continue
        fi
        local m_ns m_sum m_exp m_ck l_ns l_ck
        m_ns=$(echo "$m_line" | field netns); m_sum=$(echo "$m_line" | field ranksum)
        m_exp=$(echo "$m_line" | field expect); m_ck=$(echo "$m_line" | field checksum)
        l_ns=$(echo "$l_line" | field netns); l_ck=$(echo "$l_line" | field checksum)
        if [ "$m_ns" != "$n" ]; then fail "$name" "ranks ran in $m_ns namespaces, not $n"
        elif [ "$l_ns" != 1 ]; then fail "$name" "one-host run used $l_ns namespaces"
        elif [ "$m_sum" != "$m_exp" ]; then fail "$name" "allreduce of ranks = $m_sum, expected $m_exp"
        elif [ "$m_ck" != "$l_ck" ]; then fail "$name" "float allreduce differs: $m_ck on $n hosts, $l_ck on one host"
        else pass "$name" "$n ranks on $n hosts: ranksum=$m_sum, float allreduce checksum $m_ck = one-host result"
        fi
    done
}

# -------------------------------------------------------------- (c) bandwidth
FLOATS=991041
RATE=1gbit
RATE_BPS=1000000000
test_bandwidth() {
    mh_shape "$RATE" || { fail bandwidth "cannot shape links with tc tbf"; return; }
    local runs=3 algs="default ring" n alg
    [ "$QUICK" = 1 ] && { runs=1; algs=default; }
    for n in $HOSTS; do
        # ring allreduce model: 2(N-1)/N x bytes / bandwidth (no latency term)
        local model
        model=$(awk -v n="$n" -v f="$FLOATS" -v b="$RATE_BPS" 'BEGIN { printf "%.4f", 2*(n-1)/n * f*4*8 / b }')
        for alg in $algs; do
            local name="bandwidth-${n}hosts-$alg" extra=() meds="" r ok=1
            [ "$alg" = ring ] && extra=(--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm 4)
            for r in $(seq 1 "$runs"); do
                # shellcheck disable=SC2046
                smoke "$name-$r" "${extra[@]}" $(multi_args "$n") "$SMOKE" --floats "$FLOATS" --reps 9
                if [ "$SM_RC" != 0 ] || [ -z "$SM_LINE" ]; then
                    fail "$name" "mpirun exited $SM_RC"; show_out "$SM_OUT"; ok=0; break
                fi
                meds="$meds $(echo "$SM_LINE" | field median_s)"
            done
            [ "$ok" = 1 ] || continue
            local med
            med=$(echo "$meds" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }')
            echo "BANDWIDTH hosts=$n alg=$alg rate=$RATE floats=$FLOATS bytes=$((FLOATS * 4)) median_s=$med runs=$runs x 9 model_ring_s=$model (per-run medians:$meds)"
            # tbf must be in effect: no allreduce can beat the wire time by much
            if awk -v m="$med" -v w="$model" 'BEGIN { exit !(m >= 0.8 * w) }'; then
                pass "$name" "allreduce of $FLOATS floats over $n hosts at $RATE: median ${med}s (ring model ${model}s)"
            else
                fail "$name" "median ${med}s is below 0.8 x the wire time ${model}s: is the shaping in effect?"
            fi
        done
    done
    mh_unshape
}

# ----------------------------------------------- link down in the middle of a job
# linkdown_run TAG HOST PROGRESS_RE TIMEOUT mpirun-args...
# (LD_FAULT=kill|stop: SIGKILL/SIGSTOP host HOST's rank instead of cutting its
# link; LD_RUNNER: the command run instead of mh_mpirun, same arguments)
# Starts the job, waits for PROGRESS_RE in its output (at most 60 s), takes the
# link of host HOST down at the switch, waits for the job to end (timeout kills
# it at TIMEOUT), then waits up to 10 s for every process in the namespaces to
# go away by itself.  Sets LD_RC LD_DOWN_AFTER (s from start to link down, empty
# if it never came) LD_END_AFTER (s from link down to exit) LD_LEFT (processes
# still there after 10 s, killed since) LD_OUT (file).
linkdown_run() {
    local tag=$1 host=$2 re=$3 t=$4; shift 4
    LD_OUT=$MH_DIR/$tag.out LD_DOWN_AFTER="" LD_END_AFTER="" LD_LEFT=""
    rm -f "$MH_DIR/$tag.rc"
    local t0 tdown tend i
    t0=$(now)
    ( "${LD_RUNNER:-mh_mpirun}" "$t" "$@" > "$LD_OUT" 2>&1; echo $? > "$MH_DIR/$tag.rc" ) &
    local bg=$!
    BG_PIDS="$BG_PIDS $bg"
    for i in $(seq 1 600); do
        [ -f "$MH_DIR/$tag.rc" ] && break
        grep -Eiq -- "$re" "$LD_OUT" 2>/dev/null && break
        sleep 0.1
    done
    if [ ! -f "$MH_DIR/$tag.rc" ]; then
        sleep 1
        if [ "${LD_FAULT:-link}" = link ]; then mh_link_down "$host" "${CND_MH_LINKDOWN_WHERE:-outside}"
        else fault_rank "$host" "$LD_FAULT"; fi
        tdown=$(now)
        LD_DOWN_AFTER=$(elapsed "$t0" "$tdown")
    fi
    wait "$bg"
    BG_PIDS=${BG_PIDS% $bg}
    tend=$(now)
    LD_RC=$(cat "$MH_DIR/$tag.rc" 2>/dev/null || echo "?")
    [ -n "$LD_DOWN_AFTER" ] && LD_END_AFTER=$(elapsed "$tdown" "$tend")
    for i in $(seq 1 50); do
        [ -z "$(mh_procs)" ] && break
        sleep 0.2
    done
    local p
    for p in $(mh_procs); do
        LD_LEFT="$LD_LEFT $(ip netns identify "$p" 2>/dev/null | sed "s/^$MH_PREFIX//"):$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | awk '{print $1}' | xargs -r basename)"
    done
    mh_kill_procs
    [ "${LD_FAULT:-link}" = link ] && mh_link_up "$host"
    [ -z "$(mh_procs)" ] || LD_LEFT="$LD_LEFT (and could not kill them)"
}

test_linkdown() {
    local n=$MAXH host=2 name
    [ "$n" -ge 3 ] && host=2
    # 1. Open MPI with short runtime keepalives: mpirun must notice the lost host.
    name="linkdown-${n}hosts-keepalive"
    # shellcheck disable=SC2046
    linkdown_run "$name" "$host" '^LOOP iter=' 40 "${KEEPALIVE_FLAGS[@]}" $(multi_args "$n") "$SMOKE" --reps 1 --loop 30
    if [ -z "$LD_DOWN_AFTER" ]; then
        fail "$name" "job ended (rc $LD_RC) before the link went down"; show_out "$LD_OUT"
    elif [ "$LD_RC" = 0 ]; then
        fail "$name" "job exited 0 although host $host lost its link"
    elif [ "$LD_RC" = 124 ] || [ "$LD_RC" = 137 ]; then
        fail "$name" "job hung; killed by timeout ${LD_END_AFTER}s after the link went down"
    elif [ -n "$LD_LEFT" ]; then
        fail "$name" "exited $LD_RC ${LD_END_AFTER}s after link down, but left behind:$LD_LEFT"
    else
        pass "$name" "host $host link down after ${LD_DOWN_AFTER}s: mpirun exited $LD_RC ${LD_END_AFTER}s later, nothing left behind"
        grep -m1 -A2 'lost communication' "$LD_OUT" | sed 's/^/       | /'
    fi
    [ "$QUICK" = 1 ] && return
    # 2. Observations (full run only), each bounded by timeout:
    #    plain        Open MPI defaults (runtime keepalive 300 s + 9 x 20 s)
    #    wdW-exit     an application watchdog (what train.collective_timeout
    #    wdW-abort    does) ends each rank after W s without progress, by
    #                 _exit(4) or by MPI_Abort
    #    +ka          with the short runtime keepalives (lost host noticed ~5 s)
    local variant
    for variant in ${CND_MH_LINKDOWN_VARIANTS:-plain wd3-exit wd3-abort wd3-exit+ka wd10-exit+ka wd10-abort+ka}; do
        name="linkdown-${n}hosts-$variant"
        reset_hosts || { fail "$name" "cannot recreate the hosts"; return; }
        local args=() t=25 w
        case "$variant" in *+ka) args+=("${KEEPALIVE_FLAGS[@]}") ;; esac
        # shellcheck disable=SC2046
        args+=($(multi_args "$n") "$SMOKE" --reps 1 --loop 60)
        case "$variant" in
            wd*) w=${variant#wd}; w=${w%%-*}
                 case "$variant" in *abort*) args+=(--watchdog "$w" --watchdog-mode abort) ;;
                                    *) args+=(--watchdog "$w" --watchdog-mode exit) ;; esac ;;
        esac
        linkdown_run "$name" "$host" '^LOOP iter=' "$t" "${args[@]}"
        if [ -z "$LD_DOWN_AFTER" ]; then
            fail "$name" "job ended (rc $LD_RC) before the link went down; left:${LD_LEFT:- nothing}"; show_out "$LD_OUT"
            tail -n 3 "$CND_MH_AGENT_LOG" | cut -c1-150 | sed 's/^/       agent| /'; continue
        fi
        local what
        case "$LD_RC" in
            124|137) what="HANGS: killed by timeout ${LD_END_AFTER}s after the link went down" ;;
            0) what="exited 0 (!) ${LD_END_AFTER}s after the link went down" ;;
            *) what="exited $LD_RC ${LD_END_AFTER}s after the link went down" ;;
        esac
        echo "OBSERVE $variant, host $host link down mid-allreduce: $what; left after mpirun ended:${LD_LEFT:- nothing} (harness killed it)"
        [ -n "${MH_VERBOSE:-}" ] && show_out "$LD_OUT"
        pass "$name" "observed; harness cleaned up"
    done
}

# ------------------------------------------------------------- trainer (later)
# The real trainer on N hosts vs N ranks on one host, and the collective
# watchdog when a link goes down.  Skipped while ./convnet-dist does not exist.
test_trainer() {
    local bin=${CND_MH_BIN:-$ROOT/convnet-dist}
    local job=${CND_MH_JOB:-$ROOT/jobs/mnist.job}
    local tt=${CND_MH_TRAIN_TIMEOUT:-120}
    local ct=${CND_MH_COLLECTIVE_TIMEOUT:-2}
    local re=${CND_MH_PROGRESS_RE:-loss|step|epoch|batch}
    # shellcheck disable=SC2206
    local extra=(${CND_MH_TRAIN_ARGS---set train.steps_per_epoch=20 --set train.conv_algorithm=direct})
    if [ ! -x "$bin" ]; then skip trainer "$bin not built yet; smoke program only"; return; fi
    case "$bin" in /*) ;; *) bin=$ROOT/$bin ;; esac
    if [ ! -f "$job" ]; then skip trainer "job file $job missing"; return; fi
    local out
    if ! out=$("$bin" summary "$job" "${extra[@]}" 2>&1); then
        skip trainer "'convnet-dist summary $job ${extra[*]}' fails: $(echo "$out" | tail -n 1)"; return
    fi
    local n rc
    for n in $HOSTS; do
        local name="trainer-${n}hosts" wm="$MH_DIR/multi-$n.weights" wl="$MH_DIR/local-$n.weights"
        # shellcheck disable=SC2046
        mh_mpirun "$tt" $(multi_args "$n") -x OMP_NUM_THREADS=1 \
            "$bin" train "$job" --set train.epochs=1 --set "train.save=$wm" "${extra[@]}" > "$MH_DIR/$name-multi.out" 2>&1
        rc=$?; mh_kill_procs >/dev/null 2>&1
        if [ "$rc" != 0 ] || [ ! -s "$wm" ]; then
            fail "$name" "training on $n hosts exited $rc$([ -s "$wm" ] || echo ', no weights')"; show_out "$MH_DIR/$name-multi.out"; continue
        fi
        # shellcheck disable=SC2046
        mh_mpirun "$tt" $(local_args "$n") -x OMP_NUM_THREADS=1 \
            "$bin" train "$job" --set train.epochs=1 --set "train.save=$wl" "${extra[@]}" > "$MH_DIR/$name-local.out" 2>&1
        rc=$?; mh_kill_procs >/dev/null 2>&1
        if [ "$rc" != 0 ] || [ ! -s "$wl" ]; then
            fail "$name" "training with $n ranks on one host exited $rc$([ -s "$wl" ] || echo ', no weights')"; show_out "$MH_DIR/$name-local.out"; continue
        fi
        local d
        d=$("$bin" diff-weights "$wm" "$wl" --rtol 1e-5 2>&1); rc=$?
        if [ "$rc" = 0 ]; then pass "$name" "weights on $n hosts = $n ranks on one host (rtol 1e-5): $(echo "$d" | tail -n 1)"
        else fail "$name" "diff-weights exited $rc: $(echo "$d" | tail -n 3 | tr '\n' ' ')"; fi
    done
    # Link down: the job must end non-zero with the watchdog's message (the step,
    # the collective, and rank 1, on host 2, among the ranks rank 0 waited for),
    # and leave nothing.  With Open MPI 4.1.4 a watchdog alone cannot end it: once
    # a rank calls MPI_Abort, mpirun waits forever for the unreachable host's
    # daemon (see the wd3-* observations).  So run it as production should: the
    # watchdog fires first (collective_timeout below the keepalive detection) and
    # the short runtime keepalives (lost host noticed in ~5 s) let mpirun exit.
    n=$MAXH
    local name="trainer-linkdown-${n}hosts" limit=$((ct + 20))
    local named="rank 0: watchdog: collective '[^']+' at step [0-9]+ made no progress .*(ranks that never reached this step|ranks not heard from since they reached it): ([0-9]+ \([^)]*\), )*1 \("
    if ! out=$("$bin" summary "$job" --set "train.collective_timeout=$ct" 2>&1); then
        skip "$name" "the trainer does not take train.collective_timeout yet: $(echo "$out" | tail -n 1)"; return
    fi
    # shellcheck disable=SC2046
    linkdown_run "$name" 2 "$re" "$tt" "${KEEPALIVE_FLAGS[@]}" $(multi_args "$n") -x OMP_NUM_THREADS=1 \
        "$bin" train "$job" "${extra[@]}" --set train.epochs=100000 --set "train.collective_timeout=$ct" \
        --set "train.save=$MH_DIR/linkdown.weights"
    if [ -z "$LD_DOWN_AFTER" ]; then
        fail "$name" "job ended (rc $LD_RC) before the link went down (no output matching /$re/?)"; show_out "$LD_OUT"
    elif [ "$LD_RC" = 0 ]; then
        fail "$name" "exited 0 although host 2 lost its link"
    elif [ "$LD_RC" = 124 ] || [ "$LD_RC" = 137 ]; then
        fail "$name" "hung: killed by timeout ${LD_END_AFTER}s after link down (collective_timeout=$ct)"; show_out "$LD_OUT"
    elif awk -v e="$LD_END_AFTER" -v l="$limit" 'BEGIN { exit !(e > l) }'; then
        fail "$name" "exited $LD_RC only ${LD_END_AFTER}s after link down (limit ${limit}s)"
    elif [ -n "$LD_LEFT" ]; then
        fail "$name" "exited $LD_RC ${LD_END_AFTER}s after link down, but left behind:$LD_LEFT"
    elif ! grep -Eq -- "$named" "$LD_OUT"; then
        fail "$name" "exited $LD_RC ${LD_END_AFTER}s after link down without the watchdog naming the step and rank 1"; show_out "$LD_OUT"
    else
        pass "$name" "exited $LD_RC ${LD_END_AFTER}s after link down (collective_timeout=$ct), watchdog named the step and rank 1, nothing left behind"
        tr '\r' '\n' < "$LD_OUT" | grep -E -- 'watchdog|lost communication' | cut -c1-400 | sed 's/^/       | /'
    fi
}

# `train --timeline` on 2 hosts (1 Gbit/s links): the gradient allreduce after the backward
# (one bucket) and overlapped with it (bucket_mb small enough for several buckets); each
# trace must pass tests/timeline_check.py (both ranks, nesting, each layer's backward, the
# buckets' bytes adding up to the gradient).
test_timeline() {
    local bin=${CND_MH_BIN:-$ROOT/convnet-dist} job=${CND_MH_JOB:-$ROOT/jobs/mnist.job}
    local tt=${CND_MH_TRAIN_TIMEOUT:-120} steps=20 mode layers
    if [ ! -x "$bin" ]; then skip timeline "$bin not built yet"; return; fi
    case "$bin" in /*) ;; *) bin=$ROOT/$bin ;; esac
    command -v python3 >/dev/null 2>&1 || { skip timeline "no python3 to check the trace"; return; }
    # the layers that run backward: every layer summary lists (a job with frozen or augmentation
    # layers names its own in CND_MH_TIMELINE_LAYERS)
    layers=${CND_MH_TIMELINE_LAYERS:-$("$bin" summary "$job" 2>/dev/null | awk '/^=+$/ {n++; next} n == 1 && $2 != "(InputLayer)" {print $1}' | paste -sd, -)}
    [ -n "$layers" ] || { skip timeline "cannot read the layer names from 'summary $job'"; return; }
    mh_shape 1gbit || { fail timeline "cannot shape the links"; return; }
    for mode in after overlap; do
        local ov=false min=1 tl="$MH_DIR/timeline-$mode.json"
        [ "$mode" = overlap ] && ov=true min=2
        # shellcheck disable=SC2046
        mh_mpirun "$tt" $(multi_args 2) -x OMP_NUM_THREADS=1 "$bin" train "$job" --no-resume \
            --set train.epochs=1 --set train.steps_per_epoch=$steps --set checkpoint.path=off \
            --set train.overlap_allreduce=$ov --set train.bucket_mb=0.05 --timeline "$tl" \
            > "$MH_DIR/timeline-$mode.out" 2>&1
        local rc=$? out; mh_kill_procs >/dev/null 2>&1
        if [ "$rc" != 0 ]; then fail "timeline-$mode" "training on 2 hosts exited $rc"; show_out "$MH_DIR/timeline-$mode.out"; continue; fi
        if out=$(python3 "$ROOT/tests/timeline_check.py" "$tl" 2 "$steps" 1 "$layers" "$min" 2>&1); then
            pass "timeline-$mode" "$out"
        else fail "timeline-$mode" "$(echo "$out" | tail -n 2 | tr '\n' ' ')"; fi
        [ -n "${CND_MH_TIMELINE_OUT:-}" ] && cp "$tl" "$CND_MH_TIMELINE_OUT/"
    done
    mh_unshape
}

# ------------------------------------------------------------------------ main
echo "multihost: hosts ${HOSTS// /,} (namespaces ${MH_PREFIX}h1..h$MAXH, ${MH_SUBNET}.1-$MAXH), $([ "$QUICK" = 1 ] && echo quick || echo full) run"
T0=$(now)
want smoke && test_smoke
want bandwidth && test_bandwidth
want trainer && test_trainer
want launcher && { . "$HERE/launcher.sh"; test_launcher; }
want linkdown && test_linkdown
want timeline && test_timeline
echo "multihost: $(elapsed "$T0" "$(now)")s"
summary
if [ "$FAILED" -gt 0 ]; then exit 1; fi
if [ "$PASSED" = 0 ] && [ "$SKIPPED" -gt 0 ]; then exit 77; fi
exit 0
