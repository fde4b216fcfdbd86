#!/usr/bin/python3
"""make bench: convnet-dist's training throughput and memory beside PyTorch's on the same models,
measured in the same run, alternating the sides round by round so that the machine's drift hits
all alike.

Each model runs four ways in the same rounds: ours and PyTorch's in float32, and ours with
[train] precision = mixed_bfloat16 beside PyTorch's torch.autocast("cpu", dtype=torch.bfloat16)
(bench/torch_autocast.py, bench/torch_xception.py --autocast; channels-last, same batch, same
threads). Prints one line per round and a summary table: medians over rounds, ratios (ours /
PyTorch, ours mixed / ours float32, ours mixed / PyTorch autocast) with issue 33's targets, peak
resident memory of each, GFLOP/s and their share of the peaks that the in-tree probe
(bench/fma_peak.c: float32 FMA on AVX2 and AVX-512, vdpbf16ps on AVX512_BF16) measures in the same
run, and which instruction set each library ran (OPENBLAS_VERBOSE=2, ONEDNN_VERBOSE=1, for both
precisions). Figures are medians of medians: the machine is noisy. The `accum` row times the dogs
model's step with gradient_accumulation_steps = 4 against 1 at the same global batch (issue 34).
--coretype-unset repeats the convnet-dist side with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset
(OpenBLAS then picks its kernels from its own CPU table), for the record.
Usage: bench/run.py [--rounds N] [--quick]
                    [--only mnist,mpi,allreduce,dogs,xception,vgg,accum,loader]
                    [--precision float32,mixed_bfloat16] [--coretype-unset]
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "convnet-dist")
PEER_DIR = os.environ.get("CONVNET_PEER_BENCH", os.path.join(ROOT, "..", "shared", "bench"))
PEER = os.path.join(PEER_DIR, "torch_bench.py")
# PyTorch's bfloat16 autocast peer of the chapter-8 models (imports PEER's builders).
AUTOCAST_PEER = os.path.join(ROOT, "bench", "torch_autocast.py")
# Peers kept in this repository (models ../shared/bench does not have); they take --autocast.
LOCAL_PEERS = {"mini_xception": os.path.join(ROOT, "bench", "torch_xception.py")}
MIXED = ("--set", "train.precision=mixed_bfloat16")
# PyTorch at its best: without these glibc re-maps its activation buffers every step.
TORCH_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
# Runs the peer and reports its peak RSS (ru_maxrss of the process itself).
RSS_WRAPPER = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__'); "
               "print(json.dumps({'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
# Issue 33's targets: ours mixed / ours float32, ours mixed / PyTorch autocast (None: report only).
TARGETS = {"mnist": (None, None), "dogs": (1.6, 2.0), "mini_xception": (1.4, 2.0), "vgg_fwd": (1.6, None)}
ACCUM_K = 4  # issue 34: step time with K micro-batches within 5% of K = 1, same global batch

# The environment of our runs: unchanged, or (--coretype-unset) without OpenBLAS's CPU pin.
OUR_ENV_DROP = []


def our_env(cmd, env):
    e = dict(os.environ)
    e.update(env or {})
    if BIN in cmd:
        for k in OUR_ENV_DROP:
            e.pop(k, None)
    return e


def run_json(cmd, env=None):
    p = subprocess.run(cmd, cwd=ROOT, env=our_env(cmd, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            out.update(json.loads(line))
    return out


def mpirun(np, threads, bind):
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpirun", *root, "--oversubscribe", "-np", str(np), "--bind-to", bind,
            "-x", f"OMP_NUM_THREADS={threads}"]


def have_torch():
    return os.path.exists(PEER) and subprocess.run(
        ["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0


def have_mixed():
    """Whether this convnet-dist knows [train] precision: a bad value is refused at job load,
    before any model is built, naming the values it takes (an older binary: 'unknown key')."""
    p = subprocess.run([BIN, "summary", "jobs/mnist.job", "--set", "train.precision=?"], cwd=ROOT,
                       capture_output=True, text=True)
    return "mixed_bfloat16" in p.stderr


def ours(job, steps, reps, extra=()):
    return run_json([BIN, "bench", job, "--steps", str(steps), "--reps", str(reps), *extra])


def peer_cmd(model, steps, reps, autocast=False, warmup=None):
    common = ["--threads", "2", "--steps", str(steps), "--reps", str(reps)]
    common += ["--warmup", str(warmup)] if warmup is not None else []
    if model in LOCAL_PEERS:
        return [LOCAL_PEERS[model], *common, *(["--autocast"] if autocast else [])]
    if autocast:  # always channels-last
        return [AUTOCAST_PEER, model, *common]
    return [PEER, model, "--channels-last", *common]


def peer(model, steps, reps, autocast=False):
    return run_json(["/usr/bin/python3", "-c", "import json; " + RSS_WRAPPER,
                     *peer_cmd(model, steps, reps, autocast)], TORCH_ENV)


def xception_flops():
    """Training FLOPs per image of the mini-Xception (book 9.3.5 at 180x180, as
    jobs/mini-xception.job): multiply-adds x 2, forward + both backward passes, no backward-data
    for the first convolution (flops.py's convention). Depthwise layers count their own MACs."""
    hw = 176  # Conv2D(32, 5), valid
    macs = [hw * hw * 3 * 32 * 25]
    ci = 32
    for co in (32, 64, 128, 256, 512):
        half = (hw + 1) // 2  # MaxPooling2D(3, 2, same) and the stride-2 residual
        macs += [hw * hw * ci * 9, hw * hw * ci * co, hw * hw * co * 9, hw * hw * co * co, half * half * ci * co]
        hw, ci = half, co
    macs.append(512)
    return 2 * (3 * sum(macs) - macs[0])


def flops_per_image():
    """FLOPs per image of what each benchmark times, from the peer's flops.py (multiply-adds x 2;
    direct-convolution equivalent, so Winograd's savings show as more GFLOP/s)."""
    out = {"mini_xception": xception_flops()}
    sys.path.insert(0, PEER_DIR)
    try:
        import flops
        out.update({k: flops.step_flops(k) for k in ("mnist", "dogs", "vgg_fwd")})
    except ImportError:
        pass
    return out


def fma_peak():
    """The peaks of 2 threads, float32 FMA on AVX2 and AVX-512 and bfloat16 vdpbf16ps, measured by
    bench/fma_peak.c (0 where the CPU lacks the instructions)."""
    exe = os.path.join(ROOT, "build", "fma_peak")
    src = os.path.join(ROOT, "bench", "fma_peak.c")
    os.makedirs(os.path.dirname(exe), exist_ok=True)
    if subprocess.run(["cc", "-O2", "-fopenmp", "-o", exe, src]).returncode != 0:
        return {}
    return run_json([exe], {"OMP_NUM_THREADS": "2"})


def isa_of(cmd, env):
    """Which kernels OpenBLAS and oneDNN chose in one short run, from their verbose logs."""
    verbose = {"OPENBLAS_VERBOSE": "2", "ONEDNN_VERBOSE": "1"}
    p = subprocess.run(cmd, cwd=ROOT, env=our_env(cmd, dict(env, **verbose)), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    core = re.findall(r"Core: (\S+)", p.stdout)
    impls = sorted(set(re.findall(r"onednn_verbose,exec,cpu,convolution,([^,]+),", p.stdout)))
    # our own start-up lines about the precision (e.g. float32 where the CPU has no bfloat16 units)
    notes = [ln.strip() for ln in p.stdout.splitlines()
             if re.search(r"bfloat16|precision", ln) and not ln.startswith(("onednn_verbose", "{"))]
    return {"openblas_core": core[0] if core else "?", "onednn_conv": impls, "notes": notes[:3]}


def isa_report(mixed, torch_ok):
    """The ISA of each side on the dogs-vs-cats model: ours and PyTorch, float32 and bfloat16."""
    one = ["--steps", "1", "--reps", "1", "--warmup", "0"]
    cmd = [BIN, "bench", "jobs/dogs-vs-cats-scratch.job", "--synthetic", *one]
    out = {"convnet-dist float32": isa_of(cmd, {})}
    if torch_ok:
        out["PyTorch float32"] = isa_of(["/usr/bin/python3", *peer_cmd("dogs", 1, 1, False, 0)], TORCH_ENV)
    if mixed:
        out["convnet-dist mixed_bfloat16"] = isa_of(cmd + list(MIXED), {})
        if torch_ok:
            out["PyTorch autocast bf16"] = isa_of(["/usr/bin/python3", *peer_cmd("dogs", 1, 1, True, 0)], TORCH_ENV)
    for who, r in out.items():
        print(f"ISA {who:28s}: OpenBLAS core {r['openblas_core']}, oneDNN convolutions "
              f"{', '.join(r['onednn_conv']) or 'none (our own kernels / im2col + OpenBLAS)'}")
        for n in r["notes"]:
            print(f"    {n}")
    return out


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def alternate(title, variants, rounds):
    """Runs each (label, function) once per round, in order, for rounds rounds; returns
    {label: [result, ...]}."""
    res = {label: [] for label, _ in variants}
    for i in range(rounds):
        parts = []
        for label, fn in variants:
            res[label].append(fn())
            parts.append(f"{label} {res[label][-1]['img_s_median']:.1f}")
        print(f"  {title} round {i + 1}: " + ", ".join(parts) + " img/s", flush=True)
    return res


def summarize(what, mine, theirs):
    """A table row from our runs and (maybe empty) the peer's: medians, ratio, peak RSS."""
    row = {"what": what, "ours": med(mine, "img_s_median"), "ours_rss": max(r["peak_rss_mb"] for r in mine)}
    if "checkpoint_ms" in mine[0]:
        row["checkpoint_ms"] = med(mine, "checkpoint_ms")
    if theirs:
        row.update(peer=med(theirs, "img_s_median"), peer_rss=max(r["peak_rss_mb"] for r in theirs))
        row["ratio"] = row["ours"] / row["peer"]
    return row


def met(value, target):
    return "" if target is None else f" (target {target}x: {'met' if value >= target else 'NOT met'})"


def side_by_side(name, job, model, steps, reps, rounds, extra, precisions, torch_ok):
    """Ours and PyTorch's, float32 and/or mixed bfloat16, alternating in the same rounds; one
    table row per precision (the mixed row carries its ratios to our float32 and the targets)."""
    f32, bf16 = "float32" in precisions, "mixed_bfloat16" in precisions
    v = []
    if f32:
        v.append(("ours f32", lambda: ours(job, steps, reps, extra)))
        if torch_ok:
            v.append(("PyTorch f32", lambda: peer(model, steps, reps)))
    if bf16:
        v.append(("ours mixed", lambda: ours(job, steps, reps, (*extra, *MIXED))))
        if torch_ok:
            v.append(("PyTorch autocast", lambda: peer(model, steps, reps, True)))
    res = alternate(name, v, rounds)
    batch = next(iter(res.values()))[0]["batch"]
    rows = []
    if f32:
        rows.append(summarize(f"{name} training, batch {batch}", res["ours f32"], res.get("PyTorch f32")))
    if bf16:
        label = "  " if f32 else f"{name}, batch {batch}: "  # under the float32 row, or alone
        r = summarize(label + "mixed_bfloat16 / PyTorch autocast bf16", res["ours mixed"], res.get("PyTorch autocast"))
        r["bf16"] = True
        want_f32, want_peer = TARGETS.get(model, (None, None))
        notes = []
        if f32:
            x = r["ours"] / rows[0]["ours"]
            notes.append(f"mixed/f32 {x:.2f}x{met(x, want_f32)}, RSS {r['ours_rss'] / rows[0]['ours_rss']:.2f}x")
        if "ratio" in r:
            notes.append(f"mixed/autocast {r['ratio']:.2f}x{met(r['ratio'], want_peer)}")
        r["targets"] = "; ".join(notes)
        rows.append(r)
    for r in rows:
        r["flops"] = FLOPS.get(model)
    return rows


def accum_rows(steps, reps, rounds):
    """Issue 34: the dogs model's optimizer step with gradient_accumulation_steps = ACCUM_K against
    1, the same global batch of 32 (ACCUM_K micro-batches of 32 / ACCUM_K), alternating."""
    job, extra = "jobs/dogs-vs-cats-scratch.job", ("--synthetic", "--warmup", "1")
    k = ("--set", f"train.gradient_accumulation_steps={ACCUM_K}")
    res = alternate("accumulation", [("K=1", lambda: ours(job, steps, reps, extra)),
                                     (f"K={ACCUM_K}", lambda: ours(job, steps, reps, (*extra, *k)))], rounds)
    one, many = res["K=1"], res[f"K={ACCUM_K}"]
    assert all(r["grad_accum"] == ACCUM_K for r in many), "bench did not apply gradient_accumulation_steps"
    ms1, msk = 1e3 * one[0]["batch"] / med(one, "img_s_median"), 1e3 * many[0]["batch"] / med(many, "img_s_median")
    x = msk / ms1
    return [{"what": f"dogs-vs-cats step, K={ACCUM_K} vs K=1 micro-batches, batch 32", "ours": med(many, "img_s_median"),
             "peer": med(one, "img_s_median"), "ratio": med(many, "img_s_median") / med(one, "img_s_median"),
             "ours_rss": max(r["peak_rss_mb"] for r in many), "peer_rss": max(r["peak_rss_mb"] for r in one),
             "note": f"img/s, K=1 in the PyTorch column; step {msk:.0f} vs {ms1:.0f} ms = {x:.3f}x "
                     f"(target <= 1.05: {'met' if x <= 1.05 else 'NOT met'}); RSS K={ACCUM_K} / K=1"}]


def mpi_rows(rounds):
    print("MNIST convnet, same global batch 64: 1 rank x 2 threads vs 2 ranks x 1 thread:")
    one, two = [], []
    for i in range(max(2, rounds - 2)):
        one.append(run_json(mpirun(1, 2, "none") + [BIN, "bench", "jobs/mnist.job", "--steps", "40", "--reps", "3"]))
        two.append(run_json(mpirun(2, 1, "core") + [BIN, "bench", "jobs/mnist.job", "--steps", "40", "--reps", "3"]))
        print(f"  round {i + 1}: 1x2 {one[-1]['img_s_median']:.1f} img/s, 2x1 {two[-1]['img_s_median']:.1f} img/s "
              f"(comm {two[-1]['comm_ms']:.2f} ms/step)", flush=True)
    step_ms = 1e3 * 64 / med(two, "img_s_median")
    return [{"what": "MNIST -np 2 x 1 thread vs -np 1 x 2 threads", "ours": med(two, "img_s_median"),
             "peer": med(one, "img_s_median"), "ratio": med(two, "img_s_median") / med(one, "img_s_median"),
             "note": f"gradient allreduce {med(two, 'comm_ms'):.2f} ms of a {step_ms:.1f} ms step "
                     f"({100 * med(two, 'comm_ms') / step_ms:.1f}%)"}]


def allreduce_rows():
    r = run_json(mpirun(2, 1, "core") + [BIN, "bench-allreduce", "--floats", "991041", "--reps", "50"])
    print(f"allreduce of 991,041 floats (dogs-vs-cats gradient) over 2 ranks: {r['ms_median']:.2f} ms median")
    return [{"what": "allreduce 991,041 floats, 2 ranks, shared memory", "ours": r["ms_median"], "note": "milliseconds"}]


def loader_rows():
    r = run_json([BIN, "bench-loader", "jobs/dogs-vs-cats-scratch.job"],
                 {"CONVNET_DATA": os.path.join(ROOT, "..", "shared", "data")})
    print(f"loader: decode {r['decode_img_s']:.0f} img/s from JPEG, {r['cached_img_s']:.0f} img/s from the cache")
    return [{"what": "dogs-vs-cats loader: JPEG decode+resize, no cache", "ours": r["decode_img_s"], "note": "img/s"},
            {"what": "dogs-vs-cats loader: from the in-memory cache", "ours": r["cached_img_s"],
             "note": f"img/s ({r['cache_mb']:.0f} MB cache)"}]


def peak_note(r, peak):
    """GFLOP/s of each side as a share of the peak of the arithmetic it runs: the widest float32
    FMA for float32 rows, vdpbf16ps for the bfloat16 rows (the widest float32 one without it)."""
    g = [r["ours"] * r["flops"] / 1e9] + ([r["peer"] * r["flops"] / 1e9] if "peer" in r else [])
    if r.get("bf16") and peak.get("bf16_gflops", 0) > 0:
        isa, top = "bf16", peak["bf16_gflops"]
    elif peak["avx512_gflops"] > 0:  # without AVX-512 fma_peak reports 0 for it
        isa, top = "AVX-512", peak["avx512_gflops"]
    else:
        isa, top = "AVX2", peak["avx2_gflops"]
    return (f"GFLOP/s ours {g[0]:.0f} = {100 * g[0] / top:.0f}% of {isa} peak"
            + (f" ({100 * g[0] / peak['avx2_gflops']:.0f}% of AVX2)" if isa == "AVX-512" else "")
            + (f"; PyTorch {g[1]:.0f} = {100 * g[1] / top:.0f}%" if len(g) > 1 else ""))


def print_table(rows, peak):
    print()
    print(f"{'measurement':55s} {'convnet-dist':>13s} {'PyTorch':>9s} {'ratio':>6s} {'RSS ours/peer MB':>17s}")
    for r in rows:
        peer_s = f"{r['peer']:9.1f}" if "peer" in r else f"{'-':>9s}"
        ratio = f"{r['ratio']:6.2f}" if "ratio" in r else f"{'-':>6s}"
        rss = f"{r.get('ours_rss', 0):7.0f}/{r['peer_rss']:.0f}" if "peer_rss" in r else (
            f"{r['ours_rss']:7.0f}/-" if "ours_rss" in r else "")
        notes = [r[k] for k in ("targets", "note") if r.get(k)]
        if r.get("flops") and peak:
            notes.append(peak_note(r, peak))
        print(f"{r['what']:55s} {r['ours']:13.1f} {peer_s} {ratio} {rss:>17s}  {'; '.join(notes)}")


FLOPS = {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    ap.add_argument("--only", default="mnist,mpi,allreduce,dogs,xception,vgg,accum,loader")
    ap.add_argument("--precision", default="float32,mixed_bfloat16",
                    help="which of float32,mixed_bfloat16 the model rows run (both: the ratios between them)")
    ap.add_argument("--coretype-unset", action="store_true",
                    help="run convnet-dist without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE")
    a = ap.parse_args()
    if a.coretype_unset:
        OUR_ENV_DROP.extend(["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"])
        print("convnet-dist runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (PyTorch as it is)")
    want = set(a.only.split(","))
    precisions = set(a.precision.split(","))
    if not precisions or precisions - {"float32", "mixed_bfloat16"}:
        sys.exit(f"bench: --precision takes float32 and/or mixed_bfloat16, not '{a.precision}'")
    rounds = 2 if a.quick else a.rounds
    torch_ok = have_torch()
    if not torch_ok:
        print(f"bench: PyTorch peer not available ({PEER} and Debian's python3-torch); "
              "install it with: apt-get install -y python3-torch. Showing convnet-dist alone.")
    if "mixed_bfloat16" in precisions and not have_mixed():
        print("bench: this convnet-dist has no [train] precision key: float32 rows only")
        precisions.discard("mixed_bfloat16")
        precisions.add("float32")
    peak = fma_peak()
    FLOPS.update(flops_per_image())
    if peak:
        def fmt(k):
            return f"{peak[k]:.0f} GFLOP/s" if peak.get(k, 0) > 0 else "not on this CPU"
        print(f"peaks, 2 threads (bench/fma_peak.c): float32 FMA AVX2 {fmt('avx2_gflops')}, AVX-512 "
              f"{fmt('avx512_gflops')}; bfloat16 vdpbf16ps {fmt('bf16_gflops')}")
    isa_report("mixed_bfloat16" in precisions, torch_ok)
    big = max(2, rounds - 2)
    syn = ("--synthetic", "--warmup", "1")
    rows = []
    if "mnist" in want:
        print("MNIST convnet (book listing 8.1) on Fashion-MNIST batches, 2 threads:")
        rows += side_by_side("MNIST", "jobs/mnist.job", "mnist", 40, 3, rounds, (), precisions, torch_ok)
    if "mpi" in want and shutil.which("mpirun"):
        rows += mpi_rows(rounds)
    if "allreduce" in want and shutil.which("mpirun"):
        rows += allreduce_rows()
    if "dogs" in want:
        print("dogs-vs-cats convnet (book listing 8.7), 180x180x3, 2 threads, random data:")
        dogs = side_by_side("dogs-vs-cats", "jobs/dogs-vs-cats-scratch.job", "dogs", 2 if a.quick else 4, 3, big,
                            syn, precisions, torch_ok)
        rows += dogs
        if "checkpoint_ms" in dogs[0]:
            epoch_s = 2000 / dogs[0]["ours"]  # the book's 2,000 training images
            rows.append({"what": "checkpoint of the dogs-vs-cats model (+ RMSprop state)",
                         "ours": dogs[0]["checkpoint_ms"],
                         "note": f"ms; {100 * dogs[0]['checkpoint_ms'] / 1e3 / epoch_s:.3f}% of a {epoch_s:.0f} s epoch"})
    if "accum" in want:
        print(f"dogs-vs-cats convnet, gradient_accumulation_steps {ACCUM_K} vs 1, global batch 32, random data:")
        rows += accum_rows(2 if a.quick else 4, 3, big)
    if "xception" in want:
        print("mini-Xception (book 9.3.5: residual, BatchNorm, separable convs), 180x180x3, batch 32, "
              "random data (ours with the job's augmentation, PyTorch without):")
        rows += side_by_side("mini-Xception", "jobs/mini-xception.job", "mini_xception", 2, 3, big, syn,
                             precisions, torch_ok)
    if "vgg" in want:
        print("VGG16 convolutional base forward (frozen, as in vgg16-features.job), 180x180x3, batch 32:")
        vgg = side_by_side("VGG16 base forward", "bench/vgg16-base.job", "vgg_fwd", 2, 3, big,
                           (*syn, "--forward"), precisions, torch_ok)
        if "float32" in precisions:
            vgg[0]["what"] = "VGG16 base forward (inference), batch 32"
        rows += vgg
    if "loader" in want and os.path.isdir(os.path.join(ROOT, "..", "shared", "data", "dogs-vs-cats-small")):
        rows += loader_rows()
    print_table(rows, peak)


if __name__ == "__main__":
    main()
