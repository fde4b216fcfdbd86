#!/usr/bin/python3
"""bench_data.py (make bench-data): the data paths of issue 31 as the training set grows.

Builds training folders of 2,000, 25,000 and 100,000 images from dogs-vs-cats-small/train
(symbolic links under --work, N/2 per class, cycling the 1,000 originals of each class), and
small validation/test folders (so that evaluation does not dominate). For each size it trains
jobs/dogs-vs-cats-augment.job for one epoch of --steps steps at -np 1 and -np 2 along each path:
  folder : --set data.loading=stream (decoding from the JPEG folder a few batches ahead)
  pack   : convnet-dist pack JOB --set data.pack_dir=DIR first (timed), then train from DIR
  memory : --set data.loading=memory (today's path: every split decoded into each rank),
           skipped above --memory-max images (100,000 would take ~10 GB a rank)
Per run: start-up to the first step (the step log's first line, less one steady step; and
"own": the trainer's own printout, rank 0's process start to training, which the start-up
growth targets use when both runs have it; "listed in": the trainer's listing time), peak
RSS per rank (VmHWM of each rank's process, sampled from /proc), the node total (the largest
simultaneous sum of the ranks' PSS: mapped pack pages shared by the ranks count once), and
training img/s (steps 2..S of the step log). A run that fails (an option this build does not
have yet, say) is reported in its row and the benchmark carries on. Then issue 31's targets with
pass/fail, and the per-core rates of the pack's record layouts (build/pack_layout).

Timings are noisy on a shared machine: run under `flock /work/bench.lock` and say so.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "convnet-dist")
JOB = os.path.join(ROOT, "jobs", "dogs-vs-cats-augment.job")
SHARED = os.environ.get("CONVNET_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
SRC = os.path.join(SHARED, "dogs-vs-cats-small")
CLASSES = ("cats", "dogs")
BATCH = 32  # the job's batch_size (global)


def mpirun(np):
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    threads, bind = ("2", "none") if np == 1 else ("1", "core")
    return ["mpirun", *root, "--oversubscribe", "-np", str(np), "--bind-to", bind,
            "-x", f"OMP_NUM_THREADS={threads}", "-x", "CONVNET_RUNS=off"]


def make_folder(dst, split, per_class):
    """dst/<class>/NNNNNN.jpg -> the split's originals, cycled; reused when already complete."""
    stamp = os.path.join(dst, ".complete")
    if os.path.exists(stamp):
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    for cls in CLASSES:
        src = os.path.join(SRC, split, cls)
        orig = sorted(f for f in os.listdir(src) if f.lower().endswith(".jpg"))
        os.makedirs(os.path.join(dst, cls))
        for k in range(per_class):
            os.symlink(os.path.join(os.path.abspath(src), orig[k % len(orig)]),
                       os.path.join(dst, cls, f"{k:07d}.jpg"))
    open(stamp, "w").close()
    return dst


def listing_seconds(d):
    """Reference listing time of a folder (Python scandir + sort, cold-ish): what the folder
    path's start-up may grow by, when the trainer does not print its own."""
    t = time.monotonic()
    n = 0
    for cls in CLASSES:
        names = sorted(e.name for e in os.scandir(os.path.join(d, cls)))
        n += len(names)
    return time.monotonic() - t


def descendants(pid, name):
    """Pids of processes named `name` under pid."""
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
            comm = s[s.index("(") + 1:s.rindex(")")]
            ppid = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        kids.setdefault(ppid, []).append((int(p), comm))
    out, todo = [], [pid]
    while todo:
        for c, comm in kids.get(todo.pop(), []):
            todo.append(c)
            if comm == name[:15]:
                out.append(c)
    return out


def status_kb(pid, keys):
    got = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k = line.split(":")[0]
                if k in keys:
                    got[k] = int(line.split()[1])
    except OSError:
        pass
    return got


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rank_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read().split(b"\0"):
                if kv.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(kv.split(b"=")[1])
    except OSError:
        pass
    return None


def monitored(cmd, steplog=None, timeout=1800, cwd=None):
    """Run cmd; sample its convnet-dist processes every 20 ms. Returns a dict: rc, output,
    wall, per-rank peak RSS (MB), node peak PSS (MB), step-log line arrival times."""
    t0 = time.monotonic()
    log = open(os.path.join(cwd or ".", "run.log"), "w+")
    p = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    hwm, ranks, node_pss, arrivals, seen, last_pss = {}, {}, 0, [], 0, 0.0
    while True:
        done = p.poll() is not None
        now = time.monotonic()
        pids = descendants(p.pid, os.path.basename(BIN))
        for pid in pids:
            if pid not in ranks:
                ranks[pid] = rank_of(pid)
            st = status_kb(pid, ("VmHWM",))
            if "VmHWM" in st:
                hwm[pid] = max(hwm.get(pid, 0), st["VmHWM"])
        if pids and now - last_pss > 0.2:
            tot = [pss_kb(pid) for pid in pids]
            node_pss = max(node_pss, sum(x for x in tot if x))
            last_pss = now
        if steplog and os.path.exists(steplog):
            with open(steplog) as f:
                n = sum(1 for _ in f)
            arrivals += [now] * (n - seen)
            seen = n
        if done:
            break
        if now - t0 > timeout:
            p.kill()
            p.wait()
            break
        time.sleep(0.02)
    log.seek(0)
    out = log.read()
    log.close()
    per_rank = [hwm[pid] / 1024 for pid in sorted(hwm, key=lambda q: (ranks.get(q) is None, ranks.get(q), q))]
    return {"rc": p.returncode, "output": out, "wall": time.monotonic() - t0, "t0": t0,
            "rss": per_rank, "node_mb": node_pss / 1024, "arrivals": arrivals}


def error_line(r):
    """The run's own message (convnet-dist: ...), else its last line that is not mpirun's."""
    lines = [l.strip() for l in r["output"].splitlines() if l.strip()]
    ours = [l for l in lines if l.startswith("convnet-dist:")]
    other = [l for l in lines if not l.startswith("-----") and "onednn" not in l]
    pick = ours[0] if ours else (other[-1] if other else "no output")
    return f"exit {r['rc']}: {pick[:160]}"


def train_row(size, np, path, dirs, steps, work, pack_dir, algo):
    run_dir = os.path.join(work, "runs", f"{size}-np{np}-{path}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    steplog = os.path.join(run_dir, "steps")
    sets = [f"data.train_dir={dirs['train']}", f"data.validation_dir={dirs['validation']}",
            f"data.test_dir={dirs['test']}", "train.epochs=1", f"train.steps_per_epoch={steps}",
            f"train.step_log={steplog}", f"checkpoint.save_best={run_dir}/best.weights",
            f"train.csv_log={run_dir}/log.csv", f"train.chart={run_dir}/chart.svg",
            f"train.conv_algorithm={algo}"]
    if path == "folder":
        sets.append("data.loading=stream")
    elif path == "memory":
        sets.append("data.loading=memory")
    elif path == "pack":
        sets.append(f"data.pack_dir={pack_dir}")
    cmd = mpirun(np) + [BIN, "train", JOB] + [a for s in sets for a in ("--set", s)]
    r = monitored(cmd, steplog, cwd=run_dir)
    row = {"size": size, "np": np, "path": path, "rss": r["rss"], "node_mb": r["node_mb"]}
    if path == "memory" and r["rc"] != 0 and "unknown key 'loading'" in r["output"]:
        # a build before data.loading: its only path is the in-memory one
        sets.remove("data.loading=memory")
        cmd = mpirun(np) + [BIN, "train", JOB] + [a for s in sets for a in ("--set", s)]
        r = monitored(cmd, steplog, cwd=run_dir)
        row.update(rss=r["rss"], node_mb=r["node_mb"], path="memory")
    a = r["arrivals"]
    if r["rc"] != 0 or len(a) < 2:
        row["error"] = error_line(r)
        return row
    step = statistics.median(b - x for x, b in zip(a, a[1:]))
    row["startup"] = a[0] - r["t0"] - step
    row["img_s"] = (len(a) - 1) * BATCH / (a[-1] - a[0])
    m = re.search(r"listed in ([\d.]+) s", r["output"])  # the trainer's own listing time
    if m:
        row["listing_s"] = float(m.group(1))
    m = re.search(r"start-up: ([\d.]+) s", r["output"])  # its own start-up, rank 0's process
    if m:
        row["startup_proc"] = float(m.group(1))
    return row


def pack_row(size, np, dirs, work, pack_dir):
    run_dir = os.path.join(work, "runs", f"{size}-np{np}-pack-write")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    sets = [f"data.train_dir={dirs['train']}", f"data.validation_dir={dirs['validation']}",
            f"data.test_dir={dirs['test']}", f"data.pack_dir={pack_dir}"]
    cmd = mpirun(np) + [BIN, "pack", JOB] + [a for s in sets for a in ("--set", s)]
    r = monitored(cmd, cwd=run_dir)
    row = {"size": size, "np": np, "path": "pack (write)", "rss": r["rss"], "node_mb": r["node_mb"]}
    if r["rc"] != 0:
        row["error"] = error_line(r)
    else:
        row["pack_s"] = r["wall"]
        row["img_s"] = size / r["wall"]
        tp = os.path.join(pack_dir, "train.pack")
        if os.path.exists(tp):
            row["pack_mb"] = os.path.getsize(tp) / 2**20
            exe = os.path.join(ROOT, "build", "pack_layout")
            if os.path.exists(exe):  # pack_open alone: the start-up a pack costs
                p = subprocess.run([exe, "--open", tp, "5"], capture_output=True, text=True)
                for line in p.stdout.splitlines():
                    if line.startswith("{"):
                        row["open_ms"] = json.loads(line)["pack_open_ms"]
    return row


def isa_and_replica(work):
    """The ISA lines, and one model replica's memory: `bench --synthetic` (no data set at all)."""
    env = dict(os.environ, OPENBLAS_VERBOSE="2", ONEDNN_VERBOSE="1", OMP_NUM_THREADS="2")
    p = subprocess.run([BIN, "bench", JOB, "--synthetic", "--steps", "2", "--reps", "1",
                        "--warmup", "0"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900)
    out = p.stdout + p.stderr
    core = re.findall(r"Core: (\S+)", out)
    isa = sorted(set(re.findall(r"onednn_verbose,[^,]*,?info,cpu,isa:([^\n]+)", out)))
    impls = sorted(set(re.findall(r"onednn_verbose,[^\n]*?exec,cpu,convolution,([^,]+),", out)))
    rss = None
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            rss = json.loads(line).get("peak_rss_mb", rss)
    return {"openblas_core": core[0] if core else "?", "onednn_isa": isa, "onednn_conv": impls,
            "replica_mb": rss}


def layout_rates(rounds):
    exe = os.path.join(ROOT, "build", "pack_layout")
    if not os.path.exists(exe):
        return []
    p = subprocess.run([exe, os.path.join(SRC, "train"), "180", "180", str(rounds)],
                       env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


def fmt_row(r):
    rss = " / ".join(f"{x:,.0f}" for x in r["rss"]) or "-"
    if "error" in r:
        return f"| {r['size']:,} | {r['np']} | {r['path']} | failed: {r['error']} | | {rss} | |"
    if "pack_s" in r:
        return (f"| {r['size']:,} | {r['np']} | {r['path']} | packed in {r['pack_s']:.1f} s "
                f"({r['img_s']:.0f} img/s, {r.get('pack_mb', 0):,.0f} MB; pack_open "
                f"{r.get('open_ms', float('nan')):.1f} ms) | | {rss} | {r['node_mb']:,.0f} |")
    listed = f" (listed in {r['listing_s']:.2f} s)" if "listing_s" in r else ""
    if "startup_proc" in r:
        listed = f" [own {r['startup_proc']:.2f} s]" + listed
    return (f"| {r['size']:,} | {r['np']} | {r['path']} | {r['startup']:.1f} s{listed} | "
            f"{r['img_s']:.1f} | {rss} | {r['node_mb']:,.0f} |")


def find(rows, size, np, path):
    for r in rows:
        if r["size"] == size and r["np"] == np and r["path"] == path and "error" not in r:
            return r
    return None


def targets(rows, sizes, replica_mb, listing):
    lo, hi = min(sizes), max(sizes)
    out = []

    def verdict(name, ok, detail):
        out.append(f"- {'PASS' if ok else 'FAIL'} {name}: {detail}" if ok is not None
                   else f"- n/a  {name}: {detail}")

    for path in ("folder", "pack"):
        for np in (1, 2):
            a, b = find(rows, lo, np, path), find(rows, hi, np, path)
            if not (a and b) or lo == hi:
                verdict(f"peak RSS per rank, {path}, -np {np}", None, "runs missing")
                verdict(f"start-up growth, {path}, -np {np}", None, "runs missing")
                continue
            if a["rss"] and b["rss"]:
                ra, rb = max(a["rss"]), max(b["rss"])
                verdict(f"peak RSS per rank at {hi:,} within 10% of {lo:,} ({path}, -np {np})",
                        rb <= 1.10 * ra, f"{rb:,.0f} MB vs {ra:,.0f} MB ({rb / ra:.2f}x)")
            grow = b["startup"] - a["startup"]
            if "startup_proc" in a and "startup_proc" in b:  # the trainer's own, less noisy
                grow = b["startup_proc"] - a["startup_proc"]
            limit = 3.0 if path == "pack" else b.get("listing_s", listing.get(hi, 0.0)) - \
                a.get("listing_s", listing.get(lo, 0.0))
            verdict(f"start-up growth {lo:,} -> {hi:,} ({path}, -np {np})", grow <= max(limit, 0.0) + 1e-9,
                    f"{grow:+.1f} s (limit {limit:.2f} s" + ("" if path == "pack" else
                    f": our listing's growth; scandir lists {hi:,} in {listing.get(hi, 0):.2f} s")
                    + ")")
    for path in ("folder", "pack", "memory"):
        for size in sizes:
            a, b = find(rows, size, 1, path), find(rows, size, 2, path)
            if a and b and replica_mb:
                verdict(f"node total -np 2 <= -np 1 + one replica ({path}, {size:,})",
                        b["node_mb"] <= a["node_mb"] + replica_mb,
                        f"{b['node_mb']:,.0f} vs {a['node_mb']:,.0f} + {replica_mb:,.0f} MB")
    for size in sizes:
        for np in (1, 2):
            a, b = find(rows, size, np, "memory"), find(rows, size, np, "folder")
            if a and b:
                verdict(f"streaming img/s >= 95% of in-memory ({size:,}, -np {np})",
                        b["img_s"] >= 0.95 * a["img_s"], f"{b['img_s']:.1f} vs {a['img_s']:.1f} "
                        f"({b['img_s'] / a['img_s']:.1%})")
    return out


def main():
    global BIN
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2000,25000,100000")
    ap.add_argument("--nps", default="1,2")
    ap.add_argument("--paths", default="folder,pack,memory")
    ap.add_argument("--steps", type=int, default=10, help="training steps per run (one epoch)")
    ap.add_argument("--memory-max", type=int, default=25000, help="largest size run in memory")
    ap.add_argument("--layout-rounds", type=int, default=5, help="0: skip the record-layout rates")
    ap.add_argument("--work", default="/tmp/convnet-bench-data")
    ap.add_argument("--keep", action="store_true", help="keep the packs (GBs) after the run")
    ap.add_argument("--conv-algorithm", default="default",
                    help="train.conv_algorithm of the runs: the job's auto times every algorithm at "
                         "start-up, which adds the same seconds at every size but much noise")
    ap.add_argument("--repack-each", action="store_true",
                    help="write (and time) the pack at every -np, not only at the first")
    ap.add_argument("--bin", default=BIN, help="the convnet-dist binary to run")
    ap.add_argument("--no-isa", action="store_true", help="skip the ISA and replica measurement")
    a = ap.parse_args()
    BIN = os.path.abspath(a.bin)
    sizes = [int(s) for s in a.sizes.split(",")]
    nps = [int(s) for s in a.nps.split(",")]
    paths = a.paths.split(",")
    if not os.path.isdir(SRC):
        sys.exit(f"bench-data: {SRC} is absent (../shared/data/dogs-vs-cats-small)")
    os.makedirs(a.work, exist_ok=True)
    print(f"bench-data: {os.uname().nodename}, {os.cpu_count()} cores; the machine may be shared "
          "(other processes compile): treat timings as noisy", flush=True)
    info = {"openblas_core": "?", "onednn_isa": [], "onednn_conv": [], "replica_mb": None} \
        if a.no_isa else isa_and_replica(a.work)
    print(f"ISA: OpenBLAS core {info['openblas_core']}; oneDNN {', '.join(info['onednn_isa']) or '?'}; "
          f"convolutions {', '.join(info['onednn_conv']) or '-'}; one model replica "
          f"(bench --synthetic peak RSS) {info['replica_mb'] or '?'} MB", flush=True)
    small = {s: make_folder(os.path.join(a.work, s), s, 32) for s in ("validation", "test")}
    rows, listing = [], {}
    for size in sizes:
        t = time.monotonic()
        dirs = dict(small, train=make_folder(os.path.join(a.work, f"train-{size}"), "train", size // 2))
        listing[size] = listing_seconds(dirs["train"])
        print(f"\n{size:,} images: folder ready in {time.monotonic() - t:.1f} s, listed (scandir) in "
              f"{listing[size]:.2f} s", flush=True)
        pack_dir = os.path.join(a.work, f"pack-{size}")
        for np in nps:
            for path in paths:
                if path == "memory" and size > a.memory_max:
                    print(f"  -np {np} memory: skipped ({size:,} images would not fit a rank)")
                    continue
                if path == "pack" and (a.repack_each or np == nps[0]):
                    shutil.rmtree(pack_dir, ignore_errors=True)
                    os.makedirs(pack_dir)
                    rows.append(pack_row(size, np, dirs, a.work, pack_dir))
                    print("  " + fmt_row(rows[-1]), flush=True)
                rows.append(train_row(size, np, path, dirs, a.steps, a.work, pack_dir, a.conv_algorithm))
                print("  " + fmt_row(rows[-1]), flush=True)
        if not a.keep:
            shutil.rmtree(pack_dir, ignore_errors=True)
    print("\n| training images | ranks | path | start-up to the first step | img/s | peak RSS per rank (MB) "
          "| node total (MB, PSS) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(fmt_row(r))
    print("\nIssue 31's targets:")
    for line in targets(rows, sizes, info["replica_mb"], listing):
        print(line)
    if a.layout_rounds:
        print(f"\nPack record layout, one core, {a.layout_rounds} alternating rounds (median):")
        for r in layout_rates(a.layout_rounds):
            print("  " + json.dumps(r))
    with open(os.path.join(a.work, "bench-data.json"), "w") as f:
        json.dump({"info": info, "rows": rows, "listing": listing}, f, indent=1)


if __name__ == "__main__":
    main()
