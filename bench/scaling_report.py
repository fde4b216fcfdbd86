#!/usr/bin/python3
"""make scaling-report: projected data-parallel throughput of the book's models on 1 to 64 nodes
at 10 and 25 Gbit/s, from this machine's measured compute time per image and a ring-allreduce
communication model, calibrated on allreduce times measured over 2, 3 and 4 namespace hosts
(tests/multihost) on links shaped to 1 Gbit/s.

Model (per optimizer step, weak scaling: every node keeps the job's per-node batch b):
    T(N)      = b * t_img + T_comm(N)
    T_comm(N) = 2 (N-1)/N * bytes / (eff * link) + 2 (N-1) * alpha       (ring allreduce)
    images/s  = N * b / T(N);  efficiency = images/s(N) / (N * images/s(1))
t_img: measured here (convnet-dist bench) for MNIST and dogs-vs-cats; for VGG16 and Tiny Darknet
fine-tuning (not implemented yet) it is their training FLOPs per image divided by the GFLOP/s this
machine reached on the dogs model, which has the same kind of 3x3 convolutions.
Calibration: alpha (latency per ring step) is 25 us, typical of TCP on a data-centre LAN; eff (link
efficiency) is fitted by least squares to the 2-, 3- and 4-host measurements. The report prints each
host count's residual, and, as a check of the model's power to predict, the 4-host time predicted by
a calibration on 2 and 3 hosts only. A free fit of alpha too is printed for the record: in the
namespaces all ranks share this machine's 2 cores, so it charges scheduling waits to the network.
The projections use eff at least 0.9 (a real NIC does better than veth pairs on shared cores).
Assumptions: no overlap of communication with the backward pass (the default; overlap_allreduce
hides about half of it at 1 Gbit/s, docs/distributed.md),
each node = this machine's 2 cores, one rank per node, no stragglers.
Usage: bench/scaling_report.py [--no-measure]
"""
import argparse, json, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "convnet-dist")
ALPHA = 25e-6

# (name, job, gradient floats, batch per node, training GFLOP per image or None = measure)
MODELS = [
    ("MNIST convnet", "jobs/mnist.job", 104202, 64, None),
    ("dogs-vs-cats convnet", "jobs/dogs-vs-cats-scratch.job", 991041, 32, None),
    # VGG16 fine-tuning (book listing 8.27), 180x180: blocks 1-4 frozen (forward only), block5
    # (3 x 3x3x512x512 + biases) and the head Dense256 + Dense1 trained; 22.35 GFLOP/img
    # (../shared/bench/flops.py, vgg_finetune).
    ("VGG16 fine-tuning (block5 + head)", None,
     3 * (3 * 3 * 512 * 512 + 512) + 5 * 5 * 512 * 256 + 256 + 257, 32, 22.35),
    # Tiny Darknet fine-tuning, 224x224 (issue 5's recipe): the base up to its last 1x1:128 conv
    # (14x14x128), Flatten-Dense256-Dense1 head, the last 3x3:512 and 1x1:128 convs unfrozen.
    # ~0.98 GFLOP forward (darknet's figure) + ~0.27 GFLOP backward of the trained part.
    ("Tiny Darknet fine-tuning (last 2 convs + head)", None,
     (3 * 3 * 64 * 512 + 512) + (512 * 128 + 128) + 14 * 14 * 128 * 256 + 256 + 257, 32, 1.25),
]


def bench_img_s(job):
    p = subprocess.run([BIN, "bench", job, "--synthetic", "--steps", "3", "--reps", "3", "--warmup", "1"],
                       cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"scaling_report: bench {job} failed:\n{p.stderr[-1500:]}")
    return json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])["img_s_median"]


HOSTS = (2, 3, 4)
CAL_FLOATS = 991041


def measure_netns():
    """Allreduce medians (s) of 991,041 floats over 2, 3 and 4 namespace hosts at 1 Gbit/s (ring)."""
    p = subprocess.run([os.path.join(ROOT, "tests/multihost/run.sh"), "--only", "bandwidth",
                        "--hosts", " ".join(map(str, HOSTS))], cwd=ROOT, capture_output=True, text=True)
    got = {}
    for line in p.stdout.splitlines():
        m = re.match(r"BANDWIDTH hosts=(\d+) alg=ring .* median_s=([0-9.]+)", line)
        if m:
            got[int(m.group(1))] = float(m.group(2))
    return got


def comm_s(n, nbytes, link_bps, eff, alpha=ALPHA):
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes * 8 / (eff * link_bps) + 2 * (n - 1) * alpha


def fit_link(got, hosts, alpha=None, link_bps=1e9):
    """Least-squares fit of T = 2(N-1)/N * bits / (eff * link) + 2(N-1) * alpha over the measured
    host counts; T is linear in u = 1/eff and alpha. With alpha given only u is fitted.
    Returns (eff, alpha)."""
    bits = CAL_FLOATS * 4 * 8
    rows = [(2 * (n - 1) / n * bits / link_bps, 2 * (n - 1), got[n]) for n in hosts]
    saa = sum(a * a for a, _, _ in rows)
    if alpha is None and len(rows) >= 2:
        sab = sum(a * b for a, b, _ in rows); sbb = sum(b * b for _, b, _ in rows)
        sat = sum(a * t for a, _, t in rows); sbt = sum(b * t for _, b, t in rows)
        det = saa * sbb - sab * sab
        u, fitted = (sat * sbb - sab * sbt) / det, (saa * sbt - sab * sat) / det
        if fitted >= 0:
            return 1 / u, fitted
        alpha = 0.0  # a negative latency is noise: fit the bandwidth term alone
    alpha = ALPHA if alpha is None else alpha
    u = sum(a * (t - b * alpha) for a, b, t in rows) / saa
    return 1 / u, alpha


def report_calibration(got):
    """Calibrates the link efficiency on every measured host count and prints the residuals.

    The projections keep alpha at a LAN's 25 us and fit eff alone: in the namespaces all N ranks
    share this machine's 2 cores, so every ring step also waits for the scheduler, and a free
    fit charges that to the network as a latency of milliseconds (printed for the record, with
    a check that the model fitted to 2 and 3 hosts predicts 4). Returns (eff, alpha)."""
    hosts = [n for n in HOSTS if n in got]
    nbytes = CAL_FLOATS * 4
    eff, alpha = fit_link(got, hosts, alpha=ALPHA)
    print(f"\nnamespace hosts, links at 1 Gbit/s, allreduce of {CAL_FLOATS:,} floats (ring):")
    print(f"  calibration on {', '.join(map(str, hosts))} hosts, latency {1e6 * ALPHA:.0f} us per ring step: "
          f"link efficiency {eff:.3f}")
    for n in hosts:
        m = comm_s(n, nbytes, 1e9, eff, alpha)
        print(f"  {n} hosts: measured {1e3 * got[n]:.1f} ms, model {1e3 * m:.1f} ms, residual {100 * (m - got[n]) / got[n]:+.1f}%")
    if 2 in got and 3 in got and 4 in got:
        e23, _ = fit_link(got, [2, 3], alpha=ALPHA)
        p4 = comm_s(4, nbytes, 1e9, e23, ALPHA)
        print(f"  check: calibrated on 2 and 3 hosts only (efficiency {e23:.3f}), the model predicts 4 hosts at "
              f"{1e3 * p4:.1f} ms against {1e3 * got[4]:.1f} measured ({100 * (p4 - got[4]) / got[4]:+.1f}%)")
    if len(hosts) >= 2:
        ef, af = fit_link(got, hosts)
        print(f"  free fit of both terms: efficiency {ef:.3f}, latency {1e6 * af:.0f} us per ring step (the ranks "
              f"share 2 cores here: scheduling, not the network)")
    return max(eff, 0.9), alpha


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-measure", action="store_true", help="skip the namespace measurement")
    a = ap.parse_args()
    dogs_gflop = 2.437  # training FLOPs per image of the dogs model (../shared/bench/flops.py)
    t_img, dogs_rate = {}, None
    for name, job, _, _, gflop in MODELS:
        if job:
            rate = bench_img_s(job)
            t_img[name] = 1 / rate
            if "dogs" in name:
                dogs_rate = rate * dogs_gflop
            print(f"measured: {name}: {rate:.1f} img/s on this machine (2 cores)")
    for name, job, _, _, gflop in MODELS:
        if not job:
            t_img[name] = gflop / dogs_rate
            print(f"estimated: {name}: {1 / t_img[name]:.2f} img/s ({gflop} GFLOP/img at the dogs model's {dogs_rate:.1f} GFLOP/s)")
    eff, alpha = 0.9, ALPHA
    if not a.no_measure:
        got = measure_netns()
        if len(got) >= 2:
            eff, alpha = report_calibration(got)
        else:
            print("\nnamespace measurement unavailable (needs root and tests/multihost); link efficiency 0.9 assumed")
    for gbit in (10, 25):
        print(f"\nprojection at {gbit} Gbit/s (link efficiency {eff:.2f}, {1e6 * alpha:.0f} us per ring step, weak scaling, "
              f"per-node batch as the job):")
        print(f"  {'model':44s} " + " ".join(f"{n:>13d}" for n in (1, 2, 4, 8, 16, 32, 64)) + "   nodes")
        for name, job, floats, b, _ in MODELS:
            base = b / (b * t_img[name])
            cells = []
            for n in (1, 2, 4, 8, 16, 32, 64):
                rate = n * b / (b * t_img[name] + comm_s(n, floats * 4, gbit * 1e9, eff, alpha))
                cells.append(f"{rate:8.0f} {100 * rate / (n * base):3.0f}%")
            print(f"  {name:44s} " + " ".join(cells) + "   img/s, efficiency")
    print("\nHorovod (Sergeev & Del Balso 2018): VGG16 at 68% scaling efficiency on 128 servers x 4 GPUs over")
    print("25 Gbit/s RoCE. Our CPU nodes compute far slower per image, so the same gradient costs a far")
    print("smaller share of a step: the projection above assumes no overlap and 2-core nodes.")


if __name__ == "__main__":
    main()
