#!/bin/sh
# bench/stream_vs_memory.sh: dogs-vs-cats-augment training img/s streaming from the JPEGs vs
# loading = memory, at -np 1 and -np 2, in alternating rounds (docs/data.md); then start-up to
# the first step and peak RSS per rank from a 1-step train of each. Validation and test point at
# small subsets (made here, symbolic links) so that loading = memory decodes the 2,000 training
# images only. Usage: bench/stream_vs_memory.sh [ROUNDS] (run under flock /work/bench.lock).
set -e
ROUNDS=${1:-2}
BIN=${BIN:-$(pwd)/convnet-dist}
JOB=$(pwd)/jobs/dogs-vs-cats-augment.job
DATA=$(cd "${CONVNET_SHARED_DATA:-../shared/data}" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
ln -s "$DATA/dogs-vs-cats-small/train" "$W/train"
for s in validation test; do for c in cats dogs; do
    mkdir -p "$W/$s/$c"
    ls "$DATA/dogs-vs-cats-small/$s/$c" | head -16 | while read f; do ln -s "$DATA/dogs-vs-cats-small/$s/$c/$f" "$W/$s/$c/$f"; done
done; done
MPI="mpirun --allow-run-as-root --oversubscribe --mca btl self,vader"
SETS="--set data.root=$W --set data.train_dir=train --set data.validation_dir=validation --set data.test_dir=test --set train.conv_algorithm=im2col"
echo "ISA: $(OPENBLAS_VERBOSE=2 $BIN bench-allreduce --reps 1 2>&1 | grep -i core | head -1) $(grep -m1 -o 'avx512[a-z]*' /proc/cpuinfo | head -1)"
for r in $(seq "$ROUNDS"); do
    for np in 1 2; do
        for mode in memory stream; do
            printf 'round %s np %s %-6s ' "$r" "$np" "$mode"
            $MPI -np $np "$BIN" bench "$JOB" $SETS --set data.loading=$mode --warmup 2 --steps 4 --reps 3 2>/dev/null | tail -1
        done
    done
done
for np in 1 2; do
    for mode in memory stream; do
        printf 'start-up np %s %-6s ' "$np" "$mode"
        (cd "$W" && $MPI -np $np /usr/bin/time -f "rank: %e s wall, peak RSS %M KB" "$BIN" train "$JOB" $SETS \
            --set data.loading=$mode --set train.epochs=1 --set train.steps_per_epoch=1 \
            --set checkpoint.path=off --set checkpoint.save_best=b.w 2>&1 | grep "^rank:" | tr '\n' ' ')
        echo
    done
done
