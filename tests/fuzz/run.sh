#!/bin/sh
# run.sh: runs libFuzzer targets one at a time and reports each one's executions and coverage.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS "LIBFUZZER OPTIONS" TARGET...
#
# Each target fuzzes from its committed seeds (tests/fuzz/seeds/T) and generated ones
# (BUILD_DIR/seeds/T) into a corpus that persists in BUILD_DIR/corpus/T, for SECONDS in all.
# Its log goes to BUILD_DIR/T.log. A finding (crash, leak, UB report, an input over the
# -timeout, an allocation over -malloc_limit_mb) leaves its input in BUILD_DIR/artifacts/ and
# makes the run fail once every target has run.
#
# One exception, printed and counted, never silent: a memory error whose innermost frame is
# inside libhdf5 (Debian's build; fuzz_h5 finds heap overflows in it). Those are not ours to
# fix; real loads run libhdf5 in a child process (src/isolate.c), where such a crash is an
# error message. The target then restarts from its corpus for the time left.
build=$1 seconds=$2 opts=$3
shift 3
mkdir -p "$build/artifacts"
LSAN_OPTIONS="suppressions=$(pwd)/tests/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
failed=0

# The innermost frame of the first report in log $1 that is in libhdf5 or in our sources (a
# timeout's stack starts in the signal handler, an allocation's in the sanitizer).
first_frame() {
    sed -n '/ERROR: \(Address\|Leak\|Undefined\)Sanitizer\|ERROR: libFuzzer\|runtime error/,$p' "$1" |
        grep -E '^ +#[0-9]+ ' | grep -E 'libhdf5|/src/|/tests/' | head -1
}

for t in "$@"; do
    corpus="$build/corpus/$t"
    mkdir -p "$corpus"
    seeds=""
    for d in "tests/fuzz/seeds/$t" "$build/seeds/$t"; do [ -d "$d" ] && seeds="$seeds $d"; done
    # libhdf5 sizes its metadata-cache buffers from the file (H5C_protect) before it can know
    # they are wrong; there an allocation the machine cannot back returns NULL (an error to
    # libhdf5, a damaged file to us) instead of ending the run. Our own allocations keep the
    # -malloc_limit_mb limit.
    asan="${ASAN_OPTIONS:-}"
    [ "$t" = h5 ] && asan="allocator_may_return_null=1${asan:+:$asan}"
    start=$(date +%s) execs=0 hdf5=0 rc=0 cov="" ft=""
    : >"$build/$t.log"
    while :; do
        left=$((seconds - ($(date +%s) - start)))
        [ $left -ge 1 ] || break
        # shellcheck disable=SC2086
        ASAN_OPTIONS="$asan" "$build/fuzz_$t" $opts -max_total_time="$left" \
            -artifact_prefix="$build/artifacts/$t-" "$corpus" $seeds >"$build/$t.run.log" 2>&1
        rc=$?
        cat "$build/$t.run.log" >>"$build/$t.log"
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/$t.run.log" | tail -1)
        execs=$((execs + ${n:-0}))
        last=$(grep -E '^#[0-9]+' "$build/$t.run.log" | tail -1)
        c=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
        f=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
        [ -n "$c" ] && cov=$c && ft=$f
        [ $rc -eq 0 ] && break
        where=$(first_frame "$build/$t.run.log")
        unit=$(sed -n 's/.*Test unit written to //p' "$build/$t.run.log" | tail -1)
        if [ -z "$where" ] && [ -f "$unit" ]; then
            # no stack in the report (on a loaded machine the 1 s alarm can cut the report of
            # an allocation over the limit short): the input alone, once, says where it is
            # shellcheck disable=SC2086
            ASAN_OPTIONS="$asan" "$build/fuzz_$t" $opts -artifact_prefix="$build/artifacts/repro-" \
                "$unit" >"$build/$t.repro.log" 2>&1
            cat "$build/$t.repro.log" >>"$build/$t.log"
            where=$(first_frame "$build/$t.repro.log")
        fi
        if echo "$where" | grep -q 'libhdf5'; then
            hdf5=$((hdf5 + 1))
            echo "fuzz $t: libhdf5 memory error (not ours; contained in real loads):" \
                "$(echo "$where" | sed 's/^ *//' | cut -c1-120)"
            rc=0
            continue
        fi
        break
    done
    extra=""
    [ $hdf5 -gt 0 ] && extra=", $hdf5 libhdf5 memory errors (artifacts kept)"
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: $execs executions in $seconds s, cov: ${cov:-?} ft: ${ft:-?}, no finding in our code$extra"
    else
        echo "fuzz $t: FINDING (exit $rc) after $execs executions; log $build/$t.log:"
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written|exceeds' "$build/$t.run.log" | head -12
        echo "$where"
        failed=$((failed + 1))
    fi
done
[ $failed -eq 0 ] || { echo "fuzz: $failed of $# targets had findings"; exit 1; }
