#!/bin/sh
# run.sh: runs libFuzzer targets one at a time and reports each one's executions and coverage.
#
#   [FUZZ_JOBS=N] tests/fuzz/run.sh BUILD_DIR SECONDS "LIBFUZZER OPTIONS" TARGET...
#
# FUZZ_JOBS (default 1): processes per target, side by side on its one corpus, for SECONDS;
# their executions and counts are summed (libFuzzer's -jobs, with our restarts and counts).
# Each target fuzzes from its committed seeds (tests/fuzz/seeds/T) and generated ones
# (BUILD_DIR/seeds/T) into a corpus that persists in BUILD_DIR/corpus/T, for SECONDS in all.
# Its log goes to BUILD_DIR/T.log. A finding (crash, leak, UB report, an input over the
# -timeout, an allocation over -malloc_limit_mb) leaves its input in BUILD_DIR/artifacts/ and
# makes the run fail once every target has run.
#
# One exception, printed and counted, never silent: a memory error whose innermost frame is
# inside libhdf5 (Debian's build; fuzz_h5 finds heap overflows in it). Those are not ours to
# fix; real loads run libhdf5 in a sandboxed child process (src/formats/isolate.c), where such
# a crash is an error message. The target then restarts from its corpus for the time left.
#
# fuzz_h5 parses every input as real loads do, in a sandboxed child (one child parses up to
# $FUZZ_H5_PER_CHILD inputs, see fuzz_h5.c): a child that crashes or
# is stopped by the sandbox is *contained* (counted; its first inputs kept in
# BUILD_DIR/contained/h5 and replayed here in-process to say whose memory error it was: libhdf5's
# is contained, ours a finding); anything that escapes the child (a file written, the parent's
# parameters changed, a process left) is a finding. Its counts: BUILD_DIR/h5.stats.*
build=$1 seconds=$2 opts=$3
jobs=${FUZZ_JOBS:-1}
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

# One fuzzing process of target $t (job $1 of $jobs), until $start + $seconds: restarted after
# each libhdf5 memory error or input over the timeout in the child only. Its counts go to
# $build/$t.result.$1 ("execs hdf5 slow rc cov ft runlog"), what it found to $t.where.$1.
fuzz_job() {
    j=$1
    log="$build/$t.log" runlog="$build/$t.run.log"
    [ "$j" = 1 ] || { log="$build/$t.$j.log"; runlog="$build/$t.$j.run.log"; }
    iter=0 slow=0
    execs=0 hdf5=0 rc=0 cov="" ft="" where=""
    : >"$log"
    while :; do
        left=$((seconds - ($(date +%s) - start)))
        [ $left -ge 1 ] || break
        iter=$((iter + 1))
        FUZZ_H5_STATS="$build/h5.stats.$j.$iter"
        export FUZZ_H5_STATS
        # shellcheck disable=SC2086
        ASAN_OPTIONS="$asan" "$build/fuzz_$t" $topts -max_total_time="$left" \
            -artifact_prefix="$build/artifacts/$t-" "$corpus" $seeds >"$runlog" 2>&1
        rc=$?
        cat "$runlog" >>"$log"
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$runlog" | tail -1)
        execs=$((execs + ${n:-0}))
        last=$(grep -E '^#[0-9]+' "$runlog" | tail -1)
        c=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
        f=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
        [ -n "$c" ] && cov=$c && ft=$f
        [ $rc -eq 0 ] && break
        where=$(first_frame "$runlog")
        unit=$(sed -n 's/.*Test unit written to //p' "$runlog" | tail -1)
        escaped=$( [ "$t" = h5 ] && awk '{ e += $6 } END { print e + 0 }' "$build"/h5.stats.* 2>/dev/null)
        if [ "$t" = h5 ] && [ "${escaped:-0}" = 0 ] && grep -q 'libFuzzer: timeout' "$runlog"; then
            where="" # the parent waited on a child spinning inside libhdf5: say where, in-process
        fi
        if [ -z "$where" ] && [ -f "$unit" ]; then
            # no stack in the report (on a loaded machine the 1 s alarm can cut the report of
            # an allocation over the limit short): the input alone, once, says where it is
            # shellcheck disable=SC2086
            FUZZ_H5_STATS= FUZZ_H5_INPROCESS=1 ASAN_OPTIONS="$asan" "$build/fuzz_$t" $opts \
                -artifact_prefix="$build/artifacts/repro-$j-" "$unit" >"$build/$t.repro.$j.log" 2>&1
            cat "$build/$t.repro.$j.log" >>"$log"
            where=$(first_frame "$build/$t.repro.$j.log")
            if [ "$t" = h5 ] && [ -z "$where" ] && grep -q 'libFuzzer: timeout' "$runlog" &&
                ! grep -q 'ERROR: libFuzzer' "$build/$t.repro.$j.log"; then
                slow=$((slow + 1)) # over the limit in the child only: counted, said, not hidden
                echo "fuzz $t: an input over the timeout in the sandboxed child, not in-process: $unit"
                rc=0
                continue
            fi
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
    echo "$execs $hdf5 $slow $rc ${cov:-0} ${ft:-0} $runlog" >"$build/$t.result.$j"
    echo "$where" >"$build/$t.where.$j"
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
    if [ "$t" = h5 ]; then
        rm -rf "$build/contained/h5" "$build"/h5.stats.*
        mkdir -p "$build/contained/h5"
        FUZZ_H5_CONTAINED="$build/contained/h5"
        export FUZZ_H5_CONTAINED
    fi
    # a fork per input on a loaded machine can pass 1 s: h5's limit is 10 s (a child spinning
    # in libhdf5 still ends there, and its input is replayed in-process to say where)
    topts=$opts
    [ "$t" = h5 ] && topts="$opts -timeout=10"
    # FUZZ_JOBS processes side by side on one corpus (libFuzzer rereads it: -reload), each
    # restarted on its own; their counts are summed below
    start=$(date +%s)
    rm -f "$build/$t".result.* "$build/$t".where.*
    jn=1
    while [ $jn -le "$jobs" ]; do
        fuzz_job $jn &
        jn=$((jn + 1))
    done
    wait
    execs=0 hdf5=0 slow=0 rc=0 cov=0 ft=0 where="" runlog="$build/$t.run.log"
    for r in "$build/$t".result.*; do
        read -r e h s r_rc c f rl <"$r"
        execs=$((execs + e)) hdf5=$((hdf5 + h)) slow=$((slow + s))
        [ "$c" -gt "$cov" ] && cov=$c
        [ "$f" -gt "$ft" ] && ft=$f
        if [ "$r_rc" != 0 ] && [ $rc = 0 ]; then
            rc=$r_rc runlog=$rl where=$(cat "${r%.result.*}.where.${r##*.}")
        fi
    done
    took=$(($(date +%s) - start)) # the fuzzing, not the replays below
    extra=""
    [ $hdf5 -gt 0 ] && extra=", $hdf5 libhdf5 memory errors (artifacts kept)"
    if [ "$t" = h5 ]; then
        # the sandbox's counts, and whose each kept contained input's memory error is
        set -- $(cat "$build"/h5.stats.* 2>/dev/null | awk '{ for (i = 1; i <= 9; i++) s[i] += $i }
            END { for (i = 1; i <= 9; i++) printf "%d ", s[i] }') "$@"
        runs=$1 ok=$2 refused=$3 contained=$4 sandboxed=$5 escapes=$6 signalled=$7 limited=$8 children=$9
        shift 9
        lib=0 ours=0 alloc=0 slowok=0 other=0
        for f in "$build"/contained/h5/*; do
            [ -f "$f" ] || continue
            FUZZ_H5_STATS= FUZZ_H5_INPROCESS=1 ASAN_OPTIONS="$asan" "$build/fuzz_h5" $opts \
                -artifact_prefix="$build/artifacts/replay-" "$f" >"$build/h5.replay.log" 2>&1
            w=$(first_frame "$build/h5.replay.log")
            if echo "$w" | grep -q libhdf5; then lib=$((lib + 1))
            elif [ -n "$w" ]; then
                ours=$((ours + 1))
                echo "fuzz h5: contained crash in OUR code: $f: $(echo "$w" | sed 's/^ *//' | cut -c1-120)"
            elif grep -q 'WARNING: AddressSanitizer failed to allocate' "$build/h5.replay.log"; then
                # libhdf5 sized a buffer from the file (allocator_may_return_null=1: NULL, a
                # damaged file to it); ASan's warning is a write, which the sandbox stops
                alloc=$((alloc + 1))
            elif case $f in *contained-limit-*) true ;; *) false ;; esac; then
                slowok=$((slowok + 1)) # killed by the time limit; in-process it ends, no error
            else other=$((other + 1)); fi
        done
        echo "fuzz h5: sandbox: $runs inputs in $children sandboxed child processes: $ok loaded," \
            "$refused refused, $contained contained ($sandboxed stopped by the sandbox, $signalled" \
            "crashed on a signal, $limited killed by a limit, $((contained - sandboxed - signalled - limited))" \
            "exited early), $escapes escaped; kept $((lib + ours + alloc + slowok + other)) contained" \
            "inputs, replayed in-process: $lib libhdf5 memory errors, $ours ours, $alloc libhdf5" \
            "allocations ASan refused (its warning stopped by the sandbox), $slowok over the child's" \
            "time limit that end in-process without an error, $other not reproduced; $slow" \
            "timeouts in the child only"
        if [ "$escapes" != 0 ] || [ $ours -gt 0 ]; then rc=1; where="escaped: $escapes, ours: $ours"; fi
    fi
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: $execs executions in $took s ($((execs / (took > 0 ? took : 1))) exec/s)," \
            "cov: ${cov:-?} ft: ${ft:-?}, no finding in our code$extra"
    else
        echo "fuzz $t: FINDING (exit $rc) after $execs executions; log ${runlog%.run.log}.log:"
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written|exceeds' "$runlog" | head -12
        echo "$where"
        failed=$((failed + 1))
    fi
done
[ $failed -eq 0 ] || { echo "fuzz: $failed of $# targets had findings"; exit 1; }
