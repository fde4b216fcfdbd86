# shellcheck shell=bash
# launcher.sh - convnet-run over network-namespace hosts (sourced by run.sh, which
# provides the hosts, pass/fail/skip, linkdown_run and the trainer settings).
#
#   launcher-fault-link|kill|stop  convnet-run on 2 hosts; mid-training host 2's
#        link is cut at the switch, or its rank gets SIGKILL, or SIGSTOP. The job
#        must end within 30 s of the fault, non-zero, with nothing left running
#        in any namespace, and its output must name rank 1: rank 0's watchdog
#        report (step and silent rank) for link and stop; for kill mpirun's
#        report of rank 1's death or the watchdog's. One long epoch: the fault falls
#        in a training step (the watchdog reports 2 s into the stalled collective,
#        the runtime's keepalive ends the job ~5 s after a cut; a fault during the
#        epoch-end evaluation's compute would leave the watchdog less than that).
#   launcher-4hosts   convnet-run -np 4 over 4 hosts (one rank each) and
#        convnet-run -np 4 on one host: weights equal within 1e-5.
#
# convnet-run is given only what the namespaces need (the rsh agent, TCP
# without shared memory, one thread per rank: every "host" is the same 2
# cores); the network (the route to host 2), the keepalive and the root flags
# are its own defaults, checked in its printed command.

# mh_convnet_run TIMEOUT convnet-run-args...   (in the head namespace, like mh_mpirun)
mh_convnet_run() {
    local t=$1; shift
    TMPDIR=$MH_DIR/tmp timeout -k 5 "$t" ip netns exec "$HEAD_NS" unshare --uts \
        sh -c 'hostname "$0" && exec "$@"' "$HEAD_NS" \
        "$ROOT/convnet-run" --mca plm_rsh_agent "$HERE/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
        --mca pml ob1 --mca btl tcp,self --threads 1 --bind-to none "$@" </dev/null
}

# fault_rank HOST kill|stop: signal the convnet-dist rank running in host HOST's namespace
fault_rank() {
    local host=$1 sig p
    case "$2" in kill) sig=KILL ;; stop) sig=STOP ;; *) return 1 ;; esac
    for p in $(ip netns pids "$(mh_ns "$host")" 2>/dev/null); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = convnet-dist ] && kill -"$sig" "$p"
    done
}

test_launcher() {
    local bin=$ROOT/convnet-dist job=${CND_MH_JOB:-$ROOT/jobs/mnist.job}
    # training has started (not the printed command, whose --set options say "epoch")
    local ct=${CND_MH_COLLECTIVE_TIMEOUT:-2} re='^Epoch [0-9]+/'

    # shellcheck disable=SC2206
    local extra=(${CND_MH_TRAIN_ARGS---set train.steps_per_epoch=20 --set train.conv_algorithm=direct})
    # a fresh start each: the trainer tests' link-down run leaves its default checkpoint (of
    # another configuration) in $CONVNET_RUNS
    extra+=(--no-resume)
    if [ ! -x "$bin" ] || [ ! -x "$ROOT/convnet-run" ]; then skip launcher "convnet-dist or convnet-run not built"; return; fi
    local out
    if ! out=$("$bin" summary "$job" "${extra[@]}" 2>&1); then
        skip launcher "'convnet-dist summary $job' fails: $(echo "$out" | tail -n 1)"; return
    fi
    local hf2=$MH_DIR/launcher-hosts.2 hf4=$MH_DIR/launcher-hosts.4
    # one slot per host (reset_hosts removes $MH_DIR: written again before each run)
    hostfiles() {
        awk '{ print $1, "slots=1" }' "$MH_DIR/hostfile" | head -n 2 > "$hf2"
        awk '{ print $1, "slots=1" }' "$MH_DIR/hostfile" | head -n 4 > "$hf4"
    }
    local named="rank 0: watchdog: collective '[^']+' at step [0-9]+ made no progress .*(ranks that never reached this step|ranks not heard from since they reached it): ([0-9]+ \([^)]*\), )*1 \("
    local died="(process rank 1 .*(exited on signal|killed)|rank 1 .*(exited|terminated))"
    local fault
    for fault in ${CND_MH_LAUNCHER_FAULTS:-link kill stop}; do
        local name="launcher-fault-$fault"
        hostfiles
        LD_FAULT=$fault LD_RUNNER=mh_convnet_run linkdown_run "$name" 2 "$re" 90 --hostfile "$hf2" \
            "$job" "${extra[@]}" --set train.steps_per_epoch=100000 --set "train.collective_timeout=$ct"
        local cmdline
        cmdline=$(grep -m1 '^convnet-run: mpirun' "$LD_OUT")
        if [ -z "$cmdline" ]; then fail "$name" "convnet-run printed no command"; show_out "$LD_OUT"; continue; fi
        case "$cmdline" in
            *"oob_tcp_keepalive_time 2"*"btl_tcp_if_include ${SUBNET_CIDR}"*|*"btl_tcp_if_include ${SUBNET_CIDR}"*"oob_tcp_keepalive_time 2"*) ;;
            *) fail "$name" "command lacks the keepalive or the test subnet: $cmdline"; continue ;;
        esac
        local want=$named
        [ "$fault" = kill ] && want="$named|$died"
        if [ -z "$LD_DOWN_AFTER" ]; then
            fail "$name" "job ended (rc $LD_RC) before the fault"; show_out "$LD_OUT"
        elif [ "$LD_RC" = 0 ]; then
            fail "$name" "exited 0 although host 2's rank was lost"
        elif { [ "$LD_RC" = 124 ] || [ "$LD_RC" = 137 ]; } &&
             awk -v a="$LD_DOWN_AFTER" -v e="$LD_END_AFTER" 'BEGIN { exit !(a + e >= 85) }'; then
            # (137 is also mpirun's own status after a rank died of SIGKILL: 128 + 9)
            fail "$name" "hung: killed by timeout ${LD_END_AFTER}s after the fault"; show_out "$LD_OUT"
        elif awk -v e="$LD_END_AFTER" 'BEGIN { exit !(e > 30) }'; then
            fail "$name" "exited $LD_RC only ${LD_END_AFTER}s after the fault (limit 30 s)"
        elif [ -n "$LD_LEFT" ]; then
            fail "$name" "exited $LD_RC ${LD_END_AFTER}s after the fault, but left behind:$LD_LEFT"
        elif ! tr '\r' '\n' < "$LD_OUT" | grep -Eq -- "$want"; then
            fail "$name" "exited $LD_RC ${LD_END_AFTER}s after the fault without naming rank 1"; show_out "$LD_OUT"
        else
            pass "$name" "fault $fault after ${LD_DOWN_AFTER}s: exited $LD_RC ${LD_END_AFTER}s later, rank 1 named, nothing left behind"
            tr '\r' '\n' < "$LD_OUT" | grep -E -- "watchdog|lost communication|exited on signal" | head -n 3 | cut -c1-300 | sed 's/^/       | /'
        fi
        reset_hosts || { fail "$name" "cannot recreate the hosts"; return; }
    done
    # 4 hosts, one rank each, against 4 ranks on one host
    hostfiles
    local name=launcher-4hosts wm=$MH_DIR/launcher-4hosts.weights wl=$MH_DIR/launcher-1host.weights rc
    mh_convnet_run 180 -np 4 --hostfile "$hf4" "$job" "${extra[@]}" --set train.epochs=1 \
        --set "train.save=$wm" > "$MH_DIR/$name-multi.out" 2>&1
    rc=$?; mh_kill_procs >/dev/null 2>&1
    if [ "$rc" != 0 ] || [ ! -s "$wm" ]; then fail "$name" "convnet-run -np 4 on 4 hosts exited $rc"; show_out "$MH_DIR/$name-multi.out"; return; fi
    if ! tr '\r' '\n' < "$MH_DIR/$name-multi.out" | grep -q 'ranks x threads: 4 x 1'; then
        fail "$name" "not 4 ranks x 1 thread"; show_out "$MH_DIR/$name-multi.out"; return
    fi
    mh_convnet_run 180 -np 4 -H "$HEAD_ADDR:4" "$job" "${extra[@]}" --set train.epochs=1 \
        --set "train.save=$wl" > "$MH_DIR/$name-local.out" 2>&1
    rc=$?; mh_kill_procs >/dev/null 2>&1
    if [ "$rc" != 0 ] || [ ! -s "$wl" ]; then fail "$name" "convnet-run -np 4 on one host exited $rc"; show_out "$MH_DIR/$name-local.out"; return; fi
    local d
    d=$("$bin" diff-weights "$wm" "$wl" --rtol 1e-5 2>&1); rc=$?
    if [ "$rc" = 0 ]; then pass "$name" "4 ranks on 4 hosts = 4 ranks on one host (rtol 1e-5): $(echo "$d" | tail -n 1)"
    else fail "$name" "diff-weights exited $rc: $(echo "$d" | tail -n 3 | tr '\n' ' ')"; fi
}
