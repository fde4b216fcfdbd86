#!/bin/bash
# run.sh - the sbatch scripts in jobs/slurm/ under a real Slurm (Debian's slurm-wlm and munge),
# started on this machine for the test: 2 nodes in network namespaces (tests/slurm/cluster.sh).
#
#   tests/slurm/run.sh [--only LIST] [-v]      LIST: comma list of mnist,requeue,scancel
#
#   mnist     sbatch jobs/slurm/mnist.sbatch on 2 nodes (srun --mpi=pmix), shortened by its
#             CONVNET_TRAIN_ARGS override: completes, its output holds the test accuracy.
#   requeue   sbatch jobs/slurm/requeue.sbatch (convnet-run: mpirun inside the allocation), 2
#             ranks on 2 nodes, under a 2-minute limit with --signal=B:USR1@110: USR1 arrives
#             while it trains, it checkpoints (exit 3) and requeues itself; the test shrinks the
#             pending job to 1 node; it resumes there (2 ranks) and finishes. The first run
#             ends within 28 s of its checkpoint; final weights = an uninterrupted 2-rank run's
#             (diff-weights --rtol 1e-5).
#   scancel   requeue.sbatch launched with srun (CONVNET_LAUNCH=srun), then with convnet-run;
#             scancel 2 s into the first epoch: every rank gone within 30 s (KillWait), the ranks
#             wrote the signal checkpoint ("stopping at step N on signal: checkpoint written")
#             and a run resumes from it.
#
# Needs root (namespaces, daemons as root). Without it: "SKIP slurm: <reason>", exit 77; the
# same when slurm-wlm/munge are missing, except under CI=true, where that is a failure (CI runs
# as root after `make deps`). Everything (config, munge key, state, logs, job outputs) lives in
# /tmp/cnd-s<pid>-mh and is removed on any exit, with every process started.
# Environment: CONVNET_SHARED_DATA (default ../shared/data) for MNIST digits (mnist; skipped
# without it; with it but no mnist/ in it a skip is a failure under CI=true), CND_SL_KEEP=1 to
# keep the directory for a look, CND_SL_SCANCEL_LAUNCH to choose the scancel launchers.
# Last line: "N passed, M failed, K skipped"; exit 1 on a failure, 77 when all skipped.
set -u
# The jobs take their threads from Slurm (SLURM_CPUS_PER_TASK), as the checks below expect; an
# OMP_NUM_THREADS in the caller's shell would win over it (srun passes the environment on).
unset OMP_NUM_THREADS
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 1
ONLY="mnist,requeue,scancel"
while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY=$2; shift ;;
        -v) export MH_VERBOSE=1 ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

PASSED=0 FAILED=0 SKIPPED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $1: $2"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }
skip() {
    if [ "${CI:-}" = true ]; then fail "$1" "skipped under CI=true: $2"
    else SKIPPED=$((SKIPPED + 1)); echo "SKIP $1: $2"; fi
}
summary() { echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
skip_all() {
    if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ]; then echo "FAIL slurm: $1 (CI=true, as root: it must run)"; exit 1; fi
    echo "SKIP slurm: $1"; exit 77
}

MH_ID=s$$
# shellcheck source=../multihost/netns.sh
. "$ROOT/tests/multihost/netns.sh"
# shellcheck source=cluster.sh
. "$HERE/cluster.sh"
reason=$(mh_check) || skip_all "$reason"
reason=$(sl_check) || skip_all "$reason"
[ -x "$ROOT/convnet-dist" ] || skip_all "./convnet-dist not built"
command -v mpirun >/dev/null 2>&1 || skip_all "mpirun not found"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "${CND_SL_KEEP:-}" ]; then echo "kept $MH_DIR"; mh_kill_procs; else sl_stop; fi
    local left
    if [ -z "${CND_SL_KEEP:-}" ] && ! left=$(mh_leftovers); then echo "run.sh: left behind: $left" >&2; rc=1; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

T0=$(now)
# not in $(...): sl_start sets SL_DIR and the munged pid that sl_stop needs
if ! sl_start 2 > "${TMPDIR:-/tmp}/cnd-s$$-start.log" 2>&1; then
    cat "${TMPDIR:-/tmp}/cnd-s$$-start.log"; rm -f "${TMPDIR:-/tmp}/cnd-s$$-start.log"; for f in "$MH_DIR"/slurm/*.log "$MH_DIR"/slurm/*.out; do [ -f "$f" ] && tail -n 5 "$f"; done
    fail cluster "could not start munged + slurmctld + 2 slurmd"; summary; exit 1
fi
rm -f "${TMPDIR:-/tmp}/cnd-s$$-start.log"
echo "slurm: munged, slurmctld, slurmd n1 n2 ($(mh_addr 1), $(mh_addr 2)) up in $(elapsed "$T0" "$(now)") s; $SL_DIR"
export CONVNET_RUNS=$SL_DIR/runs   # the jobs' default checkpoints, removed with the rest
SHARED=${CONVNET_SHARED_DATA:-$ROOT/../shared/data}
SHARED=$(cd "$SHARED" 2>/dev/null && pwd)

show() { tr '\r' '\n' < "$1" | sed '/^ *$/d' | grep -v '^ *[0-9]*/[0-9]* ' | tail -n "${2:-8}" | cut -c1-220 | sed 's/^/       | /'; }
# sbatch from the repository (the scripts run ./convnet-dist), the job id on stdout
submit() { sl sbatch --parsable --chdir="$ROOT" "$@"; }
rank_pids() {   # convnet-dist processes in the cluster's namespaces
    local p
    for p in $(mh_procs); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = convnet-dist ] && echo "$p"; done
}

# ----------------------------------------------------------------- mnist (srun)
test_mnist() {
    local name=slurm-mnist-srun
    # without ../shared a plain skip, also under CI (the guide: only a skip with the data is a failure)
    if [ -z "$SHARED" ] || [ ! -d "$SHARED" ]; then SKIPPED=$((SKIPPED + 1)); echo "SKIP $name: ../shared/data is absent"; return; fi
    if [ ! -d "$SHARED/mnist" ]; then skip "$name" "no MNIST digits in $SHARED"; return; fi
    local t0 id out=$SL_DIR/mnist.out
    t0=$(now)
    id=$(CONVNET_DATA=$SHARED CONVNET_TRAIN_ARGS="--set train.epochs=1 --set train.steps_per_epoch=20" \
        submit -N 2 --ntasks-per-node=1 --cpus-per-task=1 -o "$out" jobs/slurm/mnist.sbatch) ||
        { fail "$name" "sbatch refused it: $id"; return; }
    if ! sl_wait_state "$id" 150 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL; then
        fail "$name" "job $id still $(sl_job_state "$id") after 150 s"; sl scancel "$id"; show "$out"; return
    fi
    local st acc
    st=$(sl_job_state "$id")
    acc=$(tr '\r' '\n' < "$out" | grep -m1 '^test: 10000 samples - loss: [0-9.]* - accuracy: [0-9.]*$')
    if [ "$st" != COMPLETED ]; then fail "$name" "job $id ended $st"; show "$out"
    elif [ -z "$acc" ]; then fail "$name" "no test accuracy in the output"; show "$out"
    elif ! grep -q 'ranks x threads: 2 x 1' "$out"; then fail "$name" "not 2 ranks x 1 thread"; show "$out"
    else pass "$name" "job $id on 2 nodes, 2 ranks (srun --mpi=pmix) completed in $(elapsed "$t0" "$(now)") s: $acc"; fi
}

# ------------------------------------------------------------------ requeue (mpirun)
# 2 ranks throughout (1 per node on 2 nodes, then both on 1 node) and one thread each, as in
# the reference: an interrupted and resumed run is then bitwise the uninterrupted one. (Another
# rank count only matches for a few steps: over 120 SGD steps (3 epochs here) 1 and 2 ranks' rounding grows
# to O(1) differences, as training amplifies them.)
# slurmctld looks at time limits, and so sends --signal, only every 30 s (its background loop),
# so USR1 for --time=2 --signal=B:USR1@110 comes anywhere from 10 to 40 s into a run (measured
# with --time=1 --signal=B:USR1@50: 9.4, 10.0, 15.5, 34.3 s; once none within 26 s): a run must
# outlast 40 s to be sure to get it. The 2-minute limit leaves the stopped run 80 s or more to
# end: under mpirun that takes ~21 s after the checkpoint (see below), and with a 1-minute
# limit a late USR1 let the time limit end the job first (CI: TIMEOUT after 69 s, no requeue).
# A run should not last much longer than 40 s, since each requeued run only gets 10 to 40 s. So the epoch
# count is sized to this machine: two epochs timed first, then enough for about 50 s (24 epochs
# on a Zen 4 core pair, 5 on a Zen 1 pair, where an epoch takes 10 s). A resumed run may get USR1
# again and be requeued once more.
REQ_BASE="--set train.conv_algorithm=direct --set train.optimizer=sgd --set train.lr=0.05 --set train.batch_size=512 --set train.steps_per_epoch=40"
test_requeue() {
    local name=slurm-requeue ref=$SL_DIR/uninterrupted.weights fin=$SL_DIR/requeued.weights out=$SL_DIR/requeue.out
    local t0 id epochs REQ_ARGS
    t0=$(now)
    # shellcheck disable=SC2086
    if ! mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 -x OMP_NUM_THREADS=1 \
            "$ROOT/convnet-dist" train jobs/mnist.job $REQ_BASE --set train.epochs=2 --set checkpoint.path=off \
            > "$SL_DIR/calibrate.out" 2>&1 </dev/null; then
        fail "$name" "the 2-epoch timing run failed"; show "$SL_DIR/calibrate.out"; return
    fi
    epochs=$(awk -v t="$(elapsed "$t0" "$(now)")" 'BEGIN { e = int(50 / (t / 2) + 0.999); print (e < 3) ? 3 : (e > 24) ? 24 : e }')
    REQ_ARGS="$REQ_BASE --set train.epochs=$epochs"
    t0=$(now)
    # shellcheck disable=SC2086
    if ! mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 -x OMP_NUM_THREADS=1 \
            "$ROOT/convnet-dist" train jobs/mnist.job $REQ_ARGS --set checkpoint.path=off \
            --save "$ref" > "$SL_DIR/uninterrupted.out" 2>&1 </dev/null; then
        fail "$name" "the uninterrupted run failed"; show "$SL_DIR/uninterrupted.out"; return
    fi
    local tref; tref=$(elapsed "$t0" "$(now)")
    t0=$(now)
    id=$(CONVNET_JOB=jobs/mnist.job CONVNET_RUN_OPTS="--bind-to none" CONVNET_TRAIN_ARGS="$REQ_ARGS --save $fin" \
        submit -N 2 -n 2 --cpus-per-task=1 --time=2 --signal=B:USR1@110 -o "$out" \
        jobs/slurm/requeue.sbatch) || { fail "$name" "sbatch refused it: $id"; return; }
    # Each time a run stops on USR1 (exit 3) and requeues the job, make the pending job eligible
    # now (a requeued job waits ~2 min otherwise), after the first on 1 node instead of 2, with a
    # 5-minute limit: USR1 (50 s before the limit) then comes after the resumed run has finished.
    # With the 1-minute limit each resumed run got USR1 about 10 s in (measured on a Zen 1 pair:
    # 11 to 16 of the 200 steps per run, ten requeues, still running when the test gave up). Not
    # within the second of the requeue: slurmd refuses credentials issued in the second it
    # revoked the old run's ("Job credential revoked").
    # From the first checkpoint to the requeue: mpirun takes a non-zero exit for a failure and
    # its abort waits 2 x odls_base_sigkill_timeout (10 s inside Slurm, convnet-run) on the head
    # node; when every rank exited 3 the other node's daemon waited as long again (30-40 s in
    # all, measured). dist_finalize lets rank 0 alone carry the status: ~21 s, limit 28 s.
    local i restarts=0 seen=0 state="" tfirst="" tstop="" tend=""
    for i in $(seq 1 1200); do
        state=$(sl_job_state "$id")
        case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL) break ;; esac
        [ -z "$tstop" ] && grep -q 'stopping at step [0-9]* on signal: checkpoint written' "$out" 2>/dev/null && tstop=$(now)
        restarts=$(sl scontrol show job "$id" 2>/dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
        if [ "$state" = PENDING ] && [ "${restarts:-0}" -gt "$seen" ]; then
            [ -z "$tfirst" ] && tfirst=$(elapsed "$t0" "$(now)") && [ -n "$tstop" ] && tend=$(elapsed "$tstop" "$(now)")
            seen=$restarts
            sleep 2
            sl scontrol update JobId="$id" NumNodes=1 StartTime=now TimeLimit=5 >/dev/null 2>&1 ||
                { fail "$name" "scontrol update of the requeued job failed"; sl scancel "$id"; return; }
        fi
        sleep 0.2
    done
    local runs d rc
    runs=$(grep -c '^run [0-9]* of job' "$out")
    if [ "$state" != COMPLETED ]; then
        fail "$name" "job $id: $(sl scontrol show job "$id" | grep -o 'JobState=.*') after $(elapsed "$t0" "$(now)") s"; show "$out" 14; sl scancel "$id"; return
    fi
    if [ "$seen" -lt 1 ]; then fail "$name" "job $id completed without being requeued"; show "$out" 14; return; fi
    if [ "$(grep -c 'ranks x threads: 2 x 1' "$out")" != "$runs" ]; then
        fail "$name" "not 2 ranks x 1 thread in each of the $runs runs"; show "$out" 14; return
    fi
    if ! grep -q 'on 2 node(s)' "$out" || ! grep -q 'on 1 node(s)' "$out"; then
        fail "$name" "expected a run on 2 nodes, then on 1"; show "$out" 14; return
    fi
    if ! grep -q 'stopping at step [0-9]* on signal: checkpoint written' "$out" || ! grep -q 'preempted after a checkpoint: requeueing' "$out" ||
       ! grep -q '^resuming from ' "$out"; then
        fail "$name" "no checkpoint, requeue and resume in the output"; show "$out" 14; return
    fi
    if [ -z "$tend" ] || awk -v e="$tend" 'BEGIN { exit !(e > 28) }'; then
        fail "$name" "the first run ended ${tend:-?} s after its checkpoint (limit 28 s)"; show "$out" 14; return
    fi
    d=$("$ROOT/convnet-dist" diff-weights "$ref" "$fin" --rtol 1e-5 2>&1); rc=$?
    if [ "$rc" = 0 ]; then
        pass "$name" "$epochs epochs: USR1 ${tfirst}s into 2 nodes, requeued ${tend}s after the checkpoint onto 1, finished in $(elapsed "$t0" "$(now)") s over $runs runs; = uninterrupted (${tref}s): $(echo "$d" | tail -n 1)"
        grep -E 'stopping at step|^resuming from|^run [0-9]' "$out" | cut -c1-160 | sed 's/^/       | /'
    else fail "$name" "final weights differ: $(echo "$d" | tail -n 1)"; fi
}

# ------------------------------------------------------------------ scancel
test_scancel() {
    local launch
    for launch in ${CND_SL_SCANCEL_LAUNCH:-srun convnet-run}; do
        local name="slurm-scancel-$launch" out=$SL_DIR/scancel-$launch.out runs=$SL_DIR/runs-$launch
        local id t0 i tcan
        id=$(CONVNET_RUNS=$runs CONVNET_LAUNCH=$launch CONVNET_JOB=jobs/mnist.job CONVNET_RUN_OPTS="--bind-to none" \
            CONVNET_TRAIN_ARGS="--set train.epochs=1000" \
            submit -N 2 --ntasks-per-node=1 --cpus-per-task=1 --no-requeue -o "$out" jobs/slurm/requeue.sbatch) ||
            { fail "$name" "sbatch refused it: $id"; continue; }
        t0=$(now)
        for i in $(seq 1 300); do grep -q '^Epoch 1/' "$out" 2>/dev/null && break; sleep 0.2; done
        if ! grep -q '^Epoch 1/' "$out" 2>/dev/null; then fail "$name" "training did not start"; show "$out"; sl scancel "$id"; continue; fi
        sleep 2
        [ "$(rank_pids | wc -l)" = 2 ] || { fail "$name" "expected 2 ranks running, found $(rank_pids | wc -l)"; sl scancel "$id"; continue; }
        tcan=$(now)
        sl scancel "$id"
        for i in $(seq 1 200); do [ -z "$(rank_pids)" ] && break; sleep 0.2; done
        local gone; gone=$(elapsed "$tcan" "$(now)")
        if [ -n "$(rank_pids)" ]; then fail "$name" "ranks still running ${gone}s after scancel"; show "$out"; continue; fi
        sl_wait_state "$id" 30 CANCELLED COMPLETED FAILED >/dev/null
        local ck; ck=$(ls "$runs"/*/checkpoint 2>/dev/null | head -n 1)
        if awk -v g="$gone" 'BEGIN { exit !(g > 30) }'; then fail "$name" "ranks ended ${gone}s after scancel (limit 30 s)"; continue; fi
        if [ -z "$ck" ]; then fail "$name" "no checkpoint under $runs after scancel"; show "$out"; continue; fi
        if ! grep -q 'stopping at step [0-9]* on signal: checkpoint written' "$out"; then
            fail "$name" "no signal checkpoint: the ranks did not stop together and save"; show "$out"; continue
        fi
        # valid: a run resumes from it (then is stopped again at once: SIGUSR1 after the resume)
        local r
        r=$(cd "$SL_DIR" && CONVNET_RUNS=$runs timeout -s USR1 20 "$ROOT/convnet-dist" train "$ROOT/jobs/mnist.job" \
            --set train.epochs=1000 --resume 2>&1 | tr '\r' '\n' | grep -m1 '^resuming from')
        if [ -z "$r" ]; then fail "$name" "the checkpoint $ck does not resume"; continue; fi
        pass "$name" "every rank gone ${gone}s after scancel; $(grep -m1 -o 'stopping at step [0-9]* on signal: checkpoint written' "$out"); $r"
    done
}

want mnist && test_mnist
want requeue && test_requeue
want scancel && test_scancel
echo "slurm: $(elapsed "$T0" "$(now)") s"
summary
[ "$FAILED" -gt 0 ] && exit 1
[ "$PASSED" = 0 ] && [ "$SKIPPED" -gt 0 ] && exit 77
exit 0
