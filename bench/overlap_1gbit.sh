#!/bin/bash
# overlap_1gbit.sh - `make bench-overlap`: the gradient allreduce overlapped with the backward
# pass against the plain one after it, on 2 hosts (network namespaces, tests/multihost/netns.sh,
# one rank and one thread each) linked at 1 Gbit/s (tc tbf on both ends of every link).
#
#   bench/overlap_1gbit.sh [--runs N] [--steps S] [--reps R] [--job JOB] [--bucket-mb MB]
#                          [--set SECTION.KEY=VALUE]...
#
# Runs `convnet-dist bench JOB --synthetic` N times each way (default 3), alternating off and on
# so that the machine's drift hits both alike, and prints each run's JSON line, then the medians
# over the runs of rank 0's step split: compute (forward + backward + optimizer; with overlap it
# includes starting and progressing the buckets), exposed communication (waiting for the
# gradient buckets and the step's loss after the backward pass; rank 0's wait, which includes
# waiting for the other rank, and the wait of the rank that arrived last, the communication
# alone), data (batch gathering), and the throughput. Default job: the dogs-vs-cats convnet (180x180x3, batch 32, 991,041 floats of
# gradient). Needs root; everything it creates is named cnd-<pid>-* and removed on exit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT" || exit 1
RUNS=3 STEPS=4 REPS=3 JOB=jobs/dogs-vs-cats-scratch.job BUCKET_MB=1 SETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --steps) STEPS=$2; shift ;;
        --reps) REPS=$2; shift ;;
        --job) JOB=$2; shift ;;
        --bucket-mb) BUCKET_MB=$2; shift ;;
        --set) SETS+=(--set "$2"); shift ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "overlap_1gbit.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ -x ./convnet-dist ] || { echo "overlap_1gbit.sh: build ./convnet-dist first (make)" >&2; exit 1; }

# shellcheck source=../tests/multihost/netns.sh
. "$ROOT/tests/multihost/netns.sh"
reason=$(mh_check) || { echo "overlap_1gbit.sh: $reason" >&2; exit 77; }
trap 'mh_destroy' EXIT
trap 'exit 130' INT TERM
mh_create 2 || { echo "overlap_1gbit.sh: cannot create the namespace hosts" >&2; exit 1; }
mkdir -p "$MH_DIR/tmp"
mh_shape 1gbit || { echo "overlap_1gbit.sh: cannot shape the links with tc tbf" >&2; exit 1; }
export CND_MH_MAP=$MH_DIR/hosts.map

# one rank per host, over TCP between the namespaces (as tests/multihost/run.sh)
bench_run() {
    TMPDIR=$MH_DIR/tmp timeout -k 5 900 ip netns exec "$(mh_ns 1)" unshare --uts \
        sh -c 'hostname "$0" && exec "$@"' "$(mh_ns 1)" \
        mpirun --allow-run-as-root --bind-to none --mca plm_rsh_agent "$ROOT/tests/multihost/agent.sh" \
        --mca plm_rsh_no_tree_spawn 1 --mca pml ob1 --mca btl tcp,self \
        --mca btl_tcp_if_include "$MH_SUBNET.0/24" --mca oob_tcp_if_include "$MH_SUBNET.0/24" \
        --hostfile "$MH_DIR/hostfile" -np 2 --map-by node -x OMP_NUM_THREADS=1 \
        "$ROOT/convnet-dist" bench "$JOB" --synthetic --warmup 1 --steps "$STEPS" --reps "$REPS" \
        --set "train.overlap_allreduce=$1" --set "train.bucket_mb=$BUCKET_MB" "${SETS[@]}" </dev/null 2>&1 | grep '^{'
}

for r in $(seq 1 "$RUNS"); do
    for mode in false true; do
        line=$(bench_run "$mode")
        [ -n "$line" ] || { echo "overlap_1gbit.sh: bench with overlap_allreduce=$mode failed" >&2; exit 1; }
        echo "overlap=$mode $line"
        echo "$mode $line" >> "$MH_DIR/results"
    done
done

field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "2 hosts at 1 Gbit/s, $JOB, 1 rank x 1 thread per host, bucket_mb=$BUCKET_MB ${SETS[*]}, medians of $RUNS runs"
printf "%-8s %11s %11s %11s %8s %9s %7s %8s\n" overlap compute_ms comm_ms comm_last data_ms step_ms img_s buckets
for mode in false true; do
    rows=$(grep "^$mode " "$MH_DIR/results")
    c=$(echo "$rows" | field compute_ms | median); m=$(echo "$rows" | field comm_ms | median)
    l=$(echo "$rows" | field comm_ms_min | median)
    d=$(echo "$rows" | field data_ms | median); i=$(echo "$rows" | field img_s_median | median)
    b=$(echo "$rows" | field grad_buckets | median)
    step=$(awk -v i="$i" -v B="$(echo "$rows" | field batch | head -n 1)" 'BEGIN { printf "%.1f", 1e3 * B / i }')
    printf "%-8s %11s %11s %11s %8s %9s %7s %8s\n" "$mode" "$c" "$m" "$l" "$d" "$step" "$i" "$b"
done
