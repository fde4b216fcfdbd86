#!/bin/sh
# run.sh: runs libFuzzer targets one at a time and reports each one's executions and coverage.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS "LIBFUZZER OPTIONS" TARGET...
#
# Each target fuzzes from its committed seeds (tests/fuzz/seeds/T) and generated ones
# (BUILD_DIR/seeds/T) into a corpus that persists in BUILD_DIR/corpus/T. Its log goes to
# BUILD_DIR/T.log; a finding (crash, leak, UB, timeout, over-allocation) leaves its input in
# BUILD_DIR/artifacts/ and makes the whole run fail after the other targets have run.
build=$1 seconds=$2 opts=$3
shift 3
mkdir -p "$build/artifacts"
LSAN_OPTIONS="suppressions=$(pwd)/tests/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
failed=0
for t in "$@"; do
    corpus="$build/corpus/$t"
    mkdir -p "$corpus"
    seeds=""
    for d in "tests/fuzz/seeds/$t" "$build/seeds/$t"; do [ -d "$d" ] && seeds="$seeds $d"; done
    # libhdf5 sizes its metadata-cache buffers from the file (H5C_protect) before it can know
    # they are wrong; a hostile image can ask it for tens of GB. That is inside libhdf5, out of
    # our reach: there, an allocation the machine cannot back returns NULL (which libhdf5
    # reports as an error, and we as a damaged file) instead of ending the run. The limit on
    # our own allocations stays.
    asan="${ASAN_OPTIONS:-}"
    [ "$t" = h5 ] && asan="allocator_may_return_null=1${asan:+:$asan}"
    # shellcheck disable=SC2086
    ASAN_OPTIONS="$asan" "$build/fuzz_$t" $opts -max_total_time="$seconds" -artifact_prefix="$build/artifacts/$t-" \
        "$corpus" $seeds >"$build/$t.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/$t.log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$build/$t.log" | tail -1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: ${execs:-?} executions in ${seconds} s, cov: ${cov:-?} ft: ${ft:-?}, no finding"
    else
        echo "fuzz $t: FINDING (exit $rc) after ${execs:-?} executions; log $build/$t.log:"
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written|==[0-9]+==' "$build/$t.log" | head -20
        failed=$((failed + 1))
    fi
done
[ $failed -eq 0 ] || { echo "fuzz: $failed of $# targets had findings"; exit 1; }
