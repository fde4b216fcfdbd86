#!/usr/bin/python3
"""make accuracy-seeds: test accuracy of the book's MNIST convnet recipe (jobs/mnist.job: Fashion-MNIST,
RMSprop lr 1e-3 rho 0.9 eps 1e-7 (Keras's: inside the root), batch 64, 5 epochs, glorot-uniform kernels, zero biases) over several
seeds, for convnet-dist and for PyTorch running the same recipe, alternating the two.

One run's test accuracy moves by about a point with the seed (the last RMSprop steps at lr 1e-3 are
large), so a single figure says little about whether two implementations agree: compare the spreads.
Usage: bench/accuracy_seeds.py [--seeds 1 2 3] [--threads 2] [--only ours|torch]
                               [--precision float32|mixed_bfloat16|both]
--precision both trains ours in float32 and in mixed_bfloat16 on each seed (same draws) and
compares the two, paired by seed (issue 33: the mixed mean within 0.3 points of float32's).
"""
import argparse, os, re, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "convnet-dist")
JOB = os.path.join(ROOT, "jobs", "mnist.job")
PEER_DIR = os.environ.get("CONVNET_PEER_BENCH", os.path.join(ROOT, "..", "shared", "bench"))


def train_job(extra, threads):
    """Runs `convnet-dist train jobs/mnist.job EXTRA...` with THREADS OpenMP threads; returns
    (test accuracy %, seconds). Shared with bench/trajectory.py."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [BIN, "train", JOB] + extra
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t0
    m = re.findall(r"^test: \d+ samples - loss: [0-9.]+ - accuracy: ([0-9.]+)$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-2000:]}")
    return 100.0 * float(m[-1]), dt


def peer_bench():
    """The peer's module (../shared/bench/torch_bench.py): Fashion-MNIST loader, model, Keras init."""
    sys.path.insert(0, PEER_DIR)
    import torch_bench
    return torch_bench


def ours(seed, threads, precision="float32"):
    """Trains jobs/mnist.job with --set train.seed=SEED (and train.precision); returns (test
    accuracy %, seconds)."""
    return train_job(["--set", f"train.seed={seed}", "--set", f"train.precision={precision}"], threads)


class KerasRMSprop:
    """Keras's RMSprop (tf.keras's ApplyRMSProp and Keras 3 alike): v = rho v + (1-rho) g^2,
    p -= lr g / sqrt(v + eps), epsilon INSIDE the root, as convnet-dist's optim.c.
    torch.optim.RMSprop puts it outside, g / (sqrt(v) + eps): with eps = 1e-7 that is a different
    optimizer (Keras's floor on the denominator is sqrt(1e-7) = 3.2e-4, PyTorch's 1e-7, so weights
    with small gradients take far larger steps in PyTorch's)."""

    def __init__(self, params, lr=1e-3, rho=0.9, eps=1e-7):
        import torch
        self.params = [p for p in params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.lr, self.rho, self.eps = lr, rho, eps

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        import torch
        with torch.no_grad():
            for p, v in zip(self.params, self.v):
                v.mul_(self.rho).addcmul_(p.grad, p.grad, value=1 - self.rho)
                p.sub_(self.lr * p.grad / torch.sqrt(v + self.eps))


# Our keyed random streams (include/rng.h), replayed here so that PyTorch can run on them.
_M64, _GOLDEN = (1 << 64) - 1, 0x9e3779b97f4a7c15


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & _M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & _M64
    return z ^ (z >> 31)


def our_permutation(seed, epoch, n):
    """train_epoch_permutation (src/train.c): Fisher-Yates over rng_keyed(seed, RNG_SHUFFLE = 2,
    epoch, 0), splitmix64 steps and a 128-bit multiply for the bounded draw."""
    s = _mix((_mix(_mix(seed ^ _GOLDEN) ^ 2) + epoch * _GOLDEN) & _M64)
    s = _mix(s ^ 0x632be59bd9b4e019)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        s = (s + _GOLDEN) & _M64
        k = (_mix(s) * (i + 1)) >> 64
        perm[i], perm[k] = perm[k], perm[i]
    return perm


def save_initial_weights(seed, threads, path):
    """Writes convnet-dist's initial weights for SEED to PATH: one step at learning rate 0 leaves
    them unchanged, and --save writes them. Shared with trajectory.py."""
    train_job(["--set", f"train.seed={seed}", "--set", "train.epochs=1", "--set", "train.steps_per_epoch=1",
               "--set", "train.lr=0", "--save", path], threads)


def our_initial_weights(seed, threads):
    """convnet-dist's initial weights for SEED, as trajectory.py takes them (one step at learning
    rate 0, saved), in the PyTorch model's layouts: conv (OC, C, KH, KW); the dense kernel's inputs
    from our NHWC flatten order (h, w, c) to nn.Flatten's NCHW (c, h, w)."""
    import tempfile
    import numpy as np
    from trajectory import read_weights
    with tempfile.TemporaryDirectory() as tmp:
        init = os.path.join(tmp, "init.w")
        save_initial_weights(seed, threads, init)
        w = read_weights(init)
    conv = [np.ascontiguousarray(k.transpose(3, 2, 0, 1)) for k in (w[0], w[2], w[4])]
    dense = np.ascontiguousarray(w[6].reshape(3, 3, 128, 10).transpose(3, 2, 0, 1).reshape(10, 1152))
    return conv, [w[1], w[3], w[5]], dense, w[7]


def torch_run(seed, threads, optimizer="keras", streams="torch"):
    """The same recipe in PyTorch: Keras init, Keras's RMSprop (rho 0.9, eps 1e-7 inside the root;
    optimizer="torch": torch.optim.RMSprop, eps outside), a fresh shuffle of the 60,000 images every
    epoch, the last batch partial (32), final weights tested."""
    import torch
    import torch.nn as nn
    tb = peer_bench()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x, y = tb.load_fmnist("train")
    xt, yt = tb.load_fmnist("test")
    m = tb.mnist_model()
    m.apply(tb.keras_init)
    if streams in ("ours", "our-init"):  # our initial weights in place of torch's draws
        conv, bias, dense, dbias = our_initial_weights(seed, threads)
        with torch.no_grad():
            for mod, k, b in zip((m[0], m[3], m[6]), conv, bias):
                mod.weight.copy_(torch.from_numpy(k))
                mod.bias.copy_(torch.from_numpy(b))
            m[9].weight.copy_(torch.from_numpy(dense))
            m[9].bias.copy_(torch.from_numpy(dbias))
    m = m.to(memory_format=torch.channels_last)
    if optimizer == "torch":
        opt = torch.optim.RMSprop(m.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    else:
        opt = KerasRMSprop(m.parameters(), lr=1e-3, rho=0.9, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for epoch in range(5):
        m.train()
        if streams in ("ours", "our-order"):  # our epoch permutation in place of torch.randperm
            perm = torch.tensor(our_permutation(seed, epoch, x.shape[0]))
        else:
            perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 64):
            idx = perm[i:i + 64]
            opt.zero_grad(set_to_none=True)
            loss_fn(m(x[idx].contiguous(memory_format=torch.channels_last)), y[idx]).backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        correct = sum(int((m(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum())
                      for i in range(0, xt.shape[0], 1000))
    return 100.0 * correct / xt.shape[0], time.perf_counter() - t0


def summary(name, accs):
    if not accs:
        return
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"{name} n={len(accs)}  mean {statistics.mean(accs):.2f}%  sd {sd:.2f}  "
          f"median {statistics.median(accs):.2f}%  min {min(accs):.2f}%  max {max(accs):.2f}%")


# two-sided 97.5% quantiles of Student's t (dof 1..30, then the normal's)
T975 = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13,
        2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04]


def t975(dof):
    return T975[max(1, min(int(dof), 30)) - 1] if dof < 31 else 1.96


def compare(a, b, name):
    """The difference of the two means with its standard error (Welch), the t statistic and a
    95% interval: how far the seeds pin the gap. With sd ~0.6 per run and 5 seeds each, the
    standard error of the difference is ~0.35 points, so a gap of 0.3 is below what 5 seeds
    can resolve; the line says so rather than leaving the means to speak alone."""
    if len(a) < 2 or len(b) < 2:
        return
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    d, se = statistics.mean(a) - statistics.mean(b), (va + vb) ** 0.5
    dof = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1)) if va + vb > 0 else 1
    q, t = t975(dof), d / se if se > 0 else float("inf")
    print(f"convnet-dist - {name}: {d:+.2f} points, standard error {se:.2f} "
          f"(Welch, {dof:.1f} dof), t = {t:+.2f}, 95% interval [{d - q * se:+.2f}, {d + q * se:+.2f}]")


def compare_paired(a, b, name):
    """Seed by seed, when both sides ran on the same random draws: the mean of the per-seed
    differences, its standard error and a 95% interval (n - 1 dof). The draws decide much of a
    run's result (a seed that is poor for one side is poor for the other), so pairing removes
    that share of the spread and measures the implementations alone."""
    if len(a) < 2 or len(a) != len(b):
        return
    d = [x - y for x, y in zip(a, b)]
    m, se = statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5
    q = t975(len(d) - 1)
    print(f"convnet-dist - {name}, paired by seed: {m:+.2f} points, standard error {se:.2f}, "
          f"95% interval [{m - q * se:+.2f}, {m + q * se:+.2f}]")


STREAM_LABELS = {"ours": "PyTorch on our draws", "torch": "PyTorch on its own draws",
                 "our-init": "PyTorch, our init", "our-order": "PyTorch, our order"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["ours", "torch"])
    ap.add_argument("--torch-optimizer", choices=["keras", "torch"], default="keras",
                    help="PyTorch side: Keras's RMSprop written out (default, the same formula as ours) "
                         "or torch.optim.RMSprop (epsilon outside the root)")
    ap.add_argument("--torch-streams", choices=list(STREAM_LABELS), nargs="+", default=["ours", "torch"],
                    help="the PyTorch runs per seed, by their random draws: convnet-dist's initial weights and "
                         "epoch permutations for the same seed (ours: the like-for-like comparison), PyTorch's "
                         "own (torch), or only one of ours (our-init, our-order). Default: ours and torch")
    ap.add_argument("--precision", choices=["float32", "mixed_bfloat16", "both"], default="float32",
                    help="ours: [train] precision; both: float32 and mixed_bfloat16 on each seed, paired")
    a = ap.parse_args()
    if not os.path.isfile(BIN):
        sys.exit("accuracy-seeds: build ./convnet-dist first (make)")
    peers = [] if a.only == "ours" else a.torch_streams
    precisions = ["float32", "mixed_bfloat16"] if a.precision == "both" else [a.precision]
    mixed = "convnet-dist mixed_bfloat16"
    res = {"convnet-dist": []}
    if a.precision == "both":
        res[mixed] = []
    res.update({STREAM_LABELS[k]: [] for k in peers})
    for s in a.seeds:
        for prec in precisions if a.only != "torch" else []:
            acc, dt = ours(s, a.threads, prec)
            key = mixed if prec == "mixed_bfloat16" and a.precision == "both" else "convnet-dist"
            res[key].append(acc)
            print(f"convnet-dist {prec} seed {s}: test accuracy {acc:.2f}%  ({dt:.0f} s)", flush=True)
        for k in peers:
            acc, dt = torch_run(s, a.threads, a.torch_optimizer, k)
            res[STREAM_LABELS[k]].append(acc)
            print(f"{STREAM_LABELS[k]} seed {s}: test accuracy {acc:.2f}%  ({dt:.0f} s)", flush=True)
    width = max(len(k) for k in res)
    for k, v in res.items():
        summary(k.ljust(width), v)
    if a.precision == "both":
        # float32 minus mixed: the sign below reads "how much float32 is ahead"
        compare_paired(res["convnet-dist"], res[mixed], "mixed_bfloat16")
    for k in peers:
        name = STREAM_LABELS[k]
        if k == "ours":
            compare_paired(res["convnet-dist"], res[name], name)
        compare(res["convnet-dist"], res[name], name)


if __name__ == "__main__":
    main()
