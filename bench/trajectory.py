#!/usr/bin/python3
"""make trajectory: does convnet-dist take the same training steps as PyTorch on the book's MNIST
convnet (jobs/mnist.job, Fashion-MNIST)?

A seed comparison (bench/accuracy_seeds.py) can only say that two spreads overlap. This removes the
randomness instead: both sides start from the same weights (convnet-dist's own initialisation,
saved with --save after a zero-learning-rate step), read the training images in file order
(train.shuffle = false) and apply the same RMSprop formula (Keras 3: epsilon inside the square
root, written out by hand on the PyTorch side). The per-step batch losses must then agree until
float rounding, amplified step by step, pulls the two runs apart; a wrong gradient, a wrong update
or a wrong batch shows up as a difference from the very first steps.

How fast rounding alone pulls runs apart is measured, not guessed: PyTorch runs the same steps a
second time in float64, and the float32-vs-float64 difference is printed beside ours-vs-PyTorch.
RMSprop amplifies rounding quickly: it divides each gradient by its own running magnitude, so every
weight moves by about lr each step whatever its gradient's size, and a ReLU or max-pooling choice
that rounding flips changes whole gradients. The check that matters is therefore the first steps
plus a later divergence no larger than PyTorch's own float32-vs-float64 one.
Usage: bench/trajectory.py [--epochs 1] [--threads 2] [--seed 1]
"""
import argparse, os, struct, sys, tempfile, time

import numpy as np

from accuracy_seeds import our_permutation, peer_bench, save_initial_weights, train_job

# Parameter layout of the weights file (weights.h), per layer weights then bias, Keras order:
# conv kernels (KH, KW, C, OC), dense kernel (IN, OUT) with IN in NHWC flatten order.
SHAPES = [(3, 3, 1, 32), (32,), (3, 3, 32, 64), (64,), (3, 3, 64, 128), (128,), (1152, 10), (10,)]
CHECK_STEPS = [1, 2, 5, 10, 12, 15, 20, 50, 100, 200, 500, 938]


def run_ours(args, tmp, init):
    """convnet-dist from the weights `init`, file order; returns (per-step losses, test accuracy)."""
    steplog = os.path.join(tmp, "steps.txt")
    algo = ["--set", f"train.conv_algorithm={args.algorithm}"] if args.algorithm else []
    shuffle = "true" if args.shuffle else "false"
    acc, _ = train_job(["--weights", init, "--set", f"train.shuffle={shuffle}", "--set", f"train.seed={args.seed}",
                        "--set", f"train.epochs={args.epochs}",
                        "--set", f"train.step_log={steplog}"] + algo, args.threads)
    with open(steplog) as f:
        losses = [float(line.split()[2]) for line in f]
    return np.array(losses), acc


def read_weights(path):
    """The float32 parameters of a weights file (header: magic, u32, u32, u64, u64; CRC at the end)."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != b"CNDWGT01":
        sys.exit(f"trajectory: {path}: not a convnet-dist weights file")
    (n,) = struct.unpack_from("<Q", blob, 16)
    flat = np.frombuffer(blob, dtype="<f4", count=n, offset=32)
    out, off = [], 0
    for s in SHAPES:
        k = int(np.prod(s))
        out.append(flat[off:off + k].reshape(s).copy())
        off += k
    if off != n:
        sys.exit(f"trajectory: {path}: {n} parameters, the MNIST convnet has {off}")
    return out


def run_torch(args, weights, dtype_name):
    """The same model, order and update in PyTorch, in float32 or float64; returns (per-step losses,
    test accuracy)."""
    import torch
    import torch.nn.functional as F
    dtype = getattr(torch, dtype_name)
    tb = peer_bench()
    torch.set_num_threads(args.threads)
    x, y = tb.load_fmnist("train")  # (N, 1, 28, 28) float32 / 255, int64 labels
    xt, yt = tb.load_fmnist("test")
    x, xt = x.to(dtype), xt.to(dtype)
    # (KH, KW, C, OC) -> (OC, C, KH, KW); dense (IN, OUT) -> (OUT, IN)
    p = [torch.tensor(w) for w in weights]  # copies: the caller's arrays stay the initial weights
    params = [p[0].permute(3, 2, 0, 1).contiguous(), p[1], p[2].permute(3, 2, 0, 1).contiguous(), p[3],
              p[4].permute(3, 2, 0, 1).contiguous(), p[5], p[6].t().contiguous(), p[7]]
    params = [t.to(dtype) for t in params]
    for t in params:
        t.requires_grad_(True)

    def forward(xb):
        h = F.max_pool2d(F.relu(F.conv2d(xb, params[0], params[1])), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, params[2], params[3])), 2)
        h = F.relu(F.conv2d(h, params[4], params[5]))
        h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # Keras's NHWC flatten order
        return F.linear(h, params[6], params[7])

    rms = [torch.zeros_like(t) for t in params]
    lr, rho, eps = 1e-3, 0.9, 1e-7
    losses = []
    for epoch in range(args.epochs):
        # file order, or (--shuffle) our epoch permutation replayed (accuracy_seeds.our_permutation)
        order = torch.tensor(our_permutation(args.seed, epoch, x.shape[0])) if args.shuffle else torch.arange(x.shape[0])
        for i in range(0, x.shape[0], 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(forward(x[idx]), y[idx])
            for t in params:
                t.grad = None
            loss.backward()
            with torch.no_grad():
                for t, v in zip(params, rms):
                    v.mul_(rho).addcmul_(t.grad, t.grad, value=1 - rho)
                    t.sub_(lr * t.grad / torch.sqrt(v + eps))  # Keras 3: epsilon inside the root
            losses.append(float(loss))
    with torch.no_grad():
        correct = sum(int((forward(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum())
                      for i in range(0, xt.shape[0], 1000))
    return np.array(losses), 100.0 * correct / xt.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1, help="convnet-dist's initialisation seed")
    ap.add_argument("--algorithm", default=None, help="our conv_algorithm (default: the job's, auto)")
    ap.add_argument("--shuffle", action="store_true",
                    help="shuffle every epoch with our keyed permutation (seed --seed), replayed on the PyTorch "
                         "side, instead of file order: checks the shuffled path and the replay")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        init = os.path.join(tmp, "init.w")
        save_initial_weights(args.seed, args.threads, init)
        t0 = time.perf_counter()
        ours, acc_ours = run_ours(args, tmp, init)
        t1 = time.perf_counter()
        weights = read_weights(init)
        theirs, acc_torch = run_torch(args, weights, "float32")
        t2 = time.perf_counter()
        exact, acc_exact = run_torch(args, weights, "float64")
    n = min(len(ours), len(theirs), len(exact))
    order = "our shuffle, replayed" if args.shuffle else "file order"
    print(f"same initial weights (seed {args.seed}), {order}, Keras 3 RMSprop, {args.epochs} epoch(s), "
          f"{n} steps")
    print("batch loss at a step; relative differences from PyTorch float32: convnet-dist's, and "
          "PyTorch float64's (rounding alone)")
    print(f"{'step':>6} {'convnet-dist':>13} {'PyTorch':>10} {'PT float64':>11} {'ours diff':>10} {'f64 diff':>10}")
    for s in [s for s in CHECK_STEPS if s <= n] + ([n] if n not in CHECK_STEPS else []):
        a, b, c = ours[s - 1], theirs[s - 1], exact[s - 1]
        print(f"{s:>6} {a:>13.6f} {b:>10.6f} {c:>11.6f} {abs(a - b) / abs(b):>10.2e} {abs(c - b) / abs(b):>10.2e}")
    per_epoch = n // args.epochs
    for e in range(args.epochs):
        sl = slice(e * per_epoch, (e + 1) * per_epoch)
        print(f"epoch {e + 1} mean batch loss: convnet-dist {ours[sl].mean():.4f}, PyTorch {theirs[sl].mean():.4f}, "
              f"PyTorch float64 {exact[sl].mean():.4f}")
    print(f"test accuracy: convnet-dist {acc_ours:.2f}% ({t1 - t0:.0f} s), PyTorch {acc_torch:.2f}% "
          f"({t2 - t1:.0f} s), PyTorch float64 {acc_exact:.2f}%")


if __name__ == "__main__":
    main()
