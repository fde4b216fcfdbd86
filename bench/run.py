#!/usr/bin/python3
"""make bench: convnet-dist's training throughput and memory beside PyTorch's on the same models,
measured in the same run, alternating the two so that the machine's drift hits both alike.

Prints one line per measurement and a summary table: medians over rounds, ratios (ours / PyTorch),
peak resident memory, GFLOP/s and the share of the FMA peak that the in-tree probe
(bench/fma_peak.c) measures in the same run, and which instruction set each library ran
(OPENBLAS_VERBOSE=2, ONEDNN_VERBOSE=1). Figures are medians of medians: the machine is noisy.
--coretype-unset repeats the convnet-dist side with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset
(OpenBLAS then picks its kernels from its own CPU table), for the record.
Usage: bench/run.py [--rounds N] [--quick] [--only mnist,mpi,allreduce,dogs,xception,vgg,loader]
                    [--coretype-unset]
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "convnet-dist")
PEER_DIR = os.environ.get("CONVNET_PEER_BENCH", os.path.join(ROOT, "..", "shared", "bench"))
PEER = os.path.join(PEER_DIR, "torch_bench.py")
# PyTorch at its best: without these glibc re-maps its activation buffers every step.
TORCH_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
# Runs the peer and reports its peak RSS (ru_maxrss of the process itself).
RSS_WRAPPER = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__'); "
               "print(json.dumps({'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")


# The environment of our runs: unchanged, or (--coretype-unset) without OpenBLAS's CPU pin.
OUR_ENV_DROP = []


def run_json(cmd, env=None):
    e = dict(os.environ)
    e.update(env or {})
    if cmd and cmd[0] == BIN or BIN in cmd:
        for k in OUR_ENV_DROP:
            e.pop(k, None)
    p = subprocess.run(cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


def ours(job, steps, reps, extra=()):
    return run_json([BIN, "bench", job, "--steps", str(steps), "--reps", str(reps), *extra])


# Peers kept in this repository (models ../shared/bench does not have).
LOCAL_PEERS = {"mini_xception": os.path.join(ROOT, "bench", "torch_xception.py")}


def peer(model, steps, reps):
    if model in LOCAL_PEERS:
        args = [LOCAL_PEERS[model], "--threads", "2", "--steps", str(steps), "--reps", str(reps)]
    else:
        args = [PEER, model, "--threads", "2", "--channels-last", "--steps", str(steps), "--reps", str(reps)]
    return run_json(["/usr/bin/python3", "-c", "import json; " + RSS_WRAPPER, *args], TORCH_ENV)


def flops_per_image():
    """FLOPs per image of what each benchmark times, from the peer's flops.py (multiply-adds x 2;
    direct-convolution equivalent, so Winograd's savings show as more GFLOP/s)."""
    sys.path.insert(0, PEER_DIR)
    try:
        import flops
        return {k: flops.step_flops(k) for k in ("mnist", "dogs", "vgg_fwd")}
    except ImportError:
        return {}


def fma_peak():
    """The FMA peak of 2 threads, AVX2 and AVX-512, measured by bench/fma_peak.c."""
    exe = os.path.join(ROOT, "build", "fma_peak")
    src = os.path.join(ROOT, "bench", "fma_peak.c")
    if subprocess.run(["cc", "-O2", "-fopenmp", "-o", exe, src]).returncode != 0:
        return {}
    return run_json([exe], {"OMP_NUM_THREADS": "2"})


def isa_report():
    """Which kernels OpenBLAS and oneDNN chose, for us and for PyTorch, from their verbose logs."""
    def run(cmd, env):
        e = dict(os.environ, **env)
        if BIN in cmd:
            for k in OUR_ENV_DROP:
                e.pop(k, None)
        p = subprocess.run(cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = p.stdout
        core = re.findall(r"Core: (\S+)", out)
        impls = sorted(set(re.findall(r"onednn_verbose,exec,cpu,convolution,([^,]+),", out)))
        return {"openblas_core": core[0] if core else "?", "onednn_conv": impls}
    verbose = {"OPENBLAS_VERBOSE": "2", "ONEDNN_VERBOSE": "1"}
    ours = run([BIN, "bench", "jobs/dogs-vs-cats-scratch.job", "--synthetic", "--steps", "1", "--reps", "1",
                "--warmup", "0"], verbose)
    peer_isa = run(["/usr/bin/python3", PEER, "dogs", "--threads", "2", "--channels-last", "--steps", "1",
                    "--reps", "1", "--warmup", "0"], dict(verbose, **TORCH_ENV)) if have_torch() else None
    return ours, peer_isa


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def side_by_side(name, job, model, steps, reps, rounds, extra=()):
    mine, theirs = [], []
    for i in range(rounds):
        mine.append(ours(job, steps, reps, extra))
        print(f"  {name} round {i + 1}: convnet-dist {mine[-1]['img_s_median']:.1f} img/s", end="", flush=True)
        if have_torch():
            theirs.append(peer(model, steps, reps))
            print(f", PyTorch {theirs[-1]['img_s_median']:.1f} img/s", end="")
        print(flush=True)
    row = {"what": f"{name} training, batch {mine[0]['batch']}", "ours": med(mine, "img_s_median"),
           "ours_rss": max(r["peak_rss_mb"] for r in mine), "checkpoint_ms": med(mine, "checkpoint_ms")}
    if theirs:
        row.update(peer=med(theirs, "img_s_median"), peer_rss=max(r["peak_rss_mb"] for r in theirs))
        row["ratio"] = row["ours"] / row["peer"]
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    ap.add_argument("--only", default="mnist,mpi,allreduce,dogs,xception,vgg,loader")
    ap.add_argument("--coretype-unset", action="store_true",
                    help="run convnet-dist without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE")
    a = ap.parse_args()
    if a.coretype_unset:
        OUR_ENV_DROP.extend(["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"])
        print("convnet-dist runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (PyTorch as it is)")
    want = set(a.only.split(","))
    rounds = 2 if a.quick else a.rounds
    if not have_torch():
        print(f"bench: PyTorch peer not available ({PEER} and Debian's python3-torch); "
              "install it with: apt-get install -y python3-torch. Showing convnet-dist alone.")
    peak = fma_peak()
    fl = flops_per_image()
    if peak:
        avx512 = f"{peak['avx512_gflops']:.0f} GFLOP/s" if peak["avx512_gflops"] > 0 else "not on this CPU"
        print(f"FMA peak, 2 threads (bench/fma_peak.c): AVX2 {peak['avx2_gflops']:.0f} GFLOP/s, AVX-512 {avx512}")
    ours_isa, peer_isa = isa_report()
    print(f"ISA: convnet-dist: OpenBLAS core {ours_isa['openblas_core']}, oneDNN convolutions "
          f"{', '.join(ours_isa['onednn_conv']) or 'none (im2col + OpenBLAS)'}")
    if peer_isa:
        print(f"     PyTorch: OpenBLAS core {peer_isa['openblas_core']}, oneDNN convolutions "
              f"{', '.join(peer_isa['onednn_conv']) or '?'}")
    rows = []
    if "mnist" in want:
        print("MNIST convnet (book listing 8.1) on Fashion-MNIST batches, 2 threads:")
        rows.append(side_by_side("MNIST", "jobs/mnist.job", "mnist", 40, 3, rounds))
        rows[-1]["flops"] = fl.get("mnist")
    if "mpi" in want and shutil.which("mpirun"):
        print("MNIST convnet, same global batch 64: 1 rank x 2 threads vs 2 ranks x 1 thread:")
        one, two = [], []
        for i in range(max(2, rounds - 2)):
            one.append(run_json(mpirun(1, 2, "none") + [BIN, "bench", "jobs/mnist.job", "--steps", "40", "--reps", "3"]))
            two.append(run_json(mpirun(2, 1, "core") + [BIN, "bench", "jobs/mnist.job", "--steps", "40", "--reps", "3"]))
            print(f"  round {i + 1}: 1x2 {one[-1]['img_s_median']:.1f} img/s, 2x1 {two[-1]['img_s_median']:.1f} img/s "
                  f"(comm {two[-1]['comm_ms']:.2f} ms/step)", flush=True)
        step_ms = 1e3 * 64 / med(two, "img_s_median")
        rows.append({"what": "MNIST -np 2 x 1 thread vs -np 1 x 2 threads", "ours": med(two, "img_s_median"),
                     "peer": med(one, "img_s_median"), "ratio": med(two, "img_s_median") / med(one, "img_s_median"),
                     "note": f"gradient allreduce {med(two, 'comm_ms'):.2f} ms of a {step_ms:.1f} ms step "
                             f"({100 * med(two, 'comm_ms') / step_ms:.1f}%)"})
    if "allreduce" in want and shutil.which("mpirun"):
        r = run_json(mpirun(2, 1, "core") + [BIN, "bench-allreduce", "--floats", "991041", "--reps", "50"])
        print(f"allreduce of 991,041 floats (dogs-vs-cats gradient) over 2 ranks: {r['ms_median']:.2f} ms median")
        rows.append({"what": "allreduce 991,041 floats, 2 ranks, shared memory", "ours": r["ms_median"],
                     "note": "milliseconds"})
    if "dogs" in want:
        print("dogs-vs-cats convnet (book listing 8.7), 180x180x3, 2 threads, random data:")
        rows.append(side_by_side("dogs-vs-cats", "jobs/dogs-vs-cats-scratch.job", "dogs",
                                 2 if a.quick else 4, 3, max(2, rounds - 2), ("--synthetic", "--warmup", "1")))
        r = rows[-1]
        r["flops"] = fl.get("dogs")
        epoch_s = 2000 / r["ours"]  # the book's 2,000 training images
        rows.append({"what": "checkpoint of the dogs-vs-cats model (+ RMSprop state)", "ours": r["checkpoint_ms"],
                     "note": f"ms; {100 * r['checkpoint_ms'] / 1e3 / epoch_s:.3f}% of a {epoch_s:.0f} s epoch"})
    if "xception" in want:
        print("mini-Xception (book 9.3.5: residual, BatchNorm, separable convs), 180x180x3, batch 32, "
              "random data (ours with the job's augmentation, PyTorch without):")
        rows.append(side_by_side("mini-Xception", "jobs/mini-xception.job", "mini_xception", 2, 3,
                                 max(2, rounds - 2), ("--synthetic", "--warmup", "1")))
    if "vgg" in want:
        print("VGG16 convolutional base forward (frozen, as in vgg16-features.job), 180x180x3, batch 32:")
        rows.append(side_by_side("VGG16 base forward", "bench/vgg16-base.job", "vgg_fwd", 2, 3,
                                 max(2, rounds - 2), ("--synthetic", "--forward", "--warmup", "1")))
        rows[-1]["what"] = "VGG16 base forward (inference), batch 32"
        rows[-1]["flops"] = fl.get("vgg_fwd")
    if "loader" in want and os.path.isdir(os.path.join(ROOT, "..", "shared", "data", "dogs-vs-cats-small")):
        r = run_json([BIN, "bench-loader", "jobs/dogs-vs-cats-scratch.job"],
                     {"CONVNET_DATA": os.path.join(ROOT, "..", "shared", "data")})
        print(f"loader: decode {r['decode_img_s']:.0f} img/s from JPEG, {r['cached_img_s']:.0f} img/s from the cache")
        rows.append({"what": "dogs-vs-cats loader: JPEG decode+resize, no cache", "ours": r["decode_img_s"], "note": "img/s"})
        rows.append({"what": "dogs-vs-cats loader: from the in-memory cache", "ours": r["cached_img_s"],
                     "note": f"img/s ({r['cache_mb']:.0f} MB cache)"})
    print()
    print(f"{'measurement':55s} {'convnet-dist':>13s} {'PyTorch':>9s} {'ratio':>6s} {'RSS ours/peer MB':>17s}")
    for r in rows:
        peer_s = f"{r['peer']:9.1f}" if "peer" in r else f"{'-':>9s}"
        ratio = f"{r['ratio']:6.2f}" if "ratio" in r else f"{'-':>6s}"
        rss = f"{r.get('ours_rss', 0):7.0f}/{r['peer_rss']:.0f}" if "peer_rss" in r else ""
        note = r.get("note", "")
        if r.get("flops") and peak:
            g = [r["ours"] * r["flops"] / 1e9] + ([r["peer"] * r["flops"] / 1e9] if "peer" in r else [])
            # the widest peak this machine has: without AVX-512 fma_peak reports 0 for it
            isa = "AVX-512" if peak["avx512_gflops"] > 0 else "AVX2"
            top = peak["avx512_gflops"] if isa == "AVX-512" else peak["avx2_gflops"]
            note = (f"GFLOP/s ours {g[0]:.0f} = {100 * g[0] / top:.0f}% of {isa} peak"
                    + (f" ({100 * g[0] / peak['avx2_gflops']:.0f}% of AVX2)" if isa == "AVX-512" else "")
                    + (f"; PyTorch {g[1]:.0f} = {100 * g[1] / top:.0f}%" if len(g) > 1 else ""))
        print(f"{r['what']:55s} {r['ours']:13.1f} {peer_s} {ratio} {rss:>17s}  {note}")


if __name__ == "__main__":
    main()
