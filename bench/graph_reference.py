#!/usr/bin/python3
"""graph_reference.py: a small residual + BatchNormalization + separable-convolution model
trained for 10 RMSprop steps by convnet-dist (float32) and by a float64 PyTorch reference
written here from Keras's formulas, from the same initial weights and the same batch; the
per-step losses, the final weights and the moving statistics must agree to 1e-5 relative.

    /usr/bin/python3 bench/graph_reference.py [--bin ./convnet-dist] [--steps 10] [--np N]

What the reference implements (Keras semantics; where convnet-dist's formula is a choice, the
same choice):
  - Conv2D / DepthwiseConv2D / SeparableConv2D with TF's "same" padding (the odd pixel at the
    bottom/right), MaxPooling2D(3, strides 2, same) with -inf padding;
  - BatchNormalization in training mode: the batch's mean and biased variance, epsilon 1e-3;
    moving = moving * 0.99 + batch * 0.01 (Keras 3: the biased variance, not PyTorch's unbiased
    running_var, which is why torch.nn.BatchNorm2d is not used; Keras 2's fused kernel is
    unbiased there too);
  - sparse categorical cross-entropy, the mean over the batch;
  - RMSprop as convnet-dist runs it: v = rho v + (1 - rho) g^2, p -= lr g / sqrt(v + eps),
    rho 0.9, eps 1e-7, lr 1e-3; with --epsilon-placement outside_sqrt, p -= lr g / (sqrt(v) + eps)
    (tf.keras 2, the book's jobs/mini-xception.job).
The layers directly before a BatchNormalization have no bias: BN removes it, its true gradient
is zero, and the two programs' rounding noise in it (float32 ~1e-7, float64 ~1e-16) makes
RMSprop move it by different tiny amounts (measured: 2e-3 relative to 1e-3 after 10 steps for
such a bias, while the losses agreed to 7e-8).
Exit status 0 when the losses agree to 1e-5 and the weights to 1e-5 or, where that is larger,
to the distance of the same reference run in float32 from float64 (measured 2026-12-02: ours
2.1e-5, PyTorch float32 3.3e-5, in the separable layer's depthwise kernel, whose gradients sum
many cancelling terms), 1 otherwise. Needs python3-torch (Debian).
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

N, H, W = 8, 12, 12
JOB = """[data]
root = {root}
train_images = x.idx
train_labels = y.idx
test_images = x.idx
test_labels = y.idx
scale = 1/255
[conv2d]
filters = 6
kernel_size = 3
padding = same
[batch_normalization]
[activation]
activation = relu
[separable_conv2d]
filters = 8
kernel_size = 3
padding = same
use_bias = false
[batch_normalization]
[activation]
activation = relu
[maxpooling2d]
pool_size = 3
strides = 2
padding = same
[conv2d]
inputs = conv2d
filters = 8
kernel_size = 1
strides = 2
padding = same
[add]
inputs = max_pooling2d, conv2d_1
[depthwise_conv2d]
kernel_size = 3
padding = same
use_bias = false
[batch_normalization]
[global_average_pooling2d]
[dense]
units = 3
activation = softmax
[train]
loss = sparse_categorical_crossentropy
optimizer = rmsprop
lr = 0.001
batch_size = {n}
epochs = {epochs}
seed = 5
shuffle = false
conv_algorithm = direct
"""

# The parameter file's layout: every layer's weights in layer order (Keras's tensor order and
# shapes), then every BatchNormalization's moving statistics.
WEIGHTS = [("conv2d/kernel", (3, 3, 1, 6)), ("conv2d/bias", (6,)),
           ("bn/gamma", (6,)), ("bn/beta", (6,)),
           ("sep/depthwise_kernel", (3, 3, 6, 1)), ("sep/pointwise_kernel", (1, 1, 6, 8)),
           ("bn1/gamma", (8,)), ("bn1/beta", (8,)),
           ("conv2d_1/kernel", (1, 1, 6, 8)), ("conv2d_1/bias", (8,)),
           ("dw/depthwise_kernel", (3, 3, 8, 1)),
           ("bn2/gamma", (8,)), ("bn2/beta", (8,)),
           ("dense/kernel", (8, 3)), ("dense/bias", (3,))]
STATE = [("bn/moving_mean", (6,)), ("bn/moving_variance", (6,)),
         ("bn1/moving_mean", (8,)), ("bn1/moving_variance", (8,)),
         ("bn2/moving_mean", (8,)), ("bn2/moving_variance", (8,))]


def write_idx(path, arr):
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, arr.ndim))
        f.write(struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(arr.astype(np.uint8).tobytes())


def read_weights(path):
    """convnet-dist's weights file (include/weights.h): 32-byte header, float32s, CRC."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"CNDWGT01", path
    n = struct.unpack_from("<Q", raw, 16)[0]
    vals = np.frombuffer(raw, dtype="<f4", count=n, offset=32).astype(np.float64)
    out, at = {}, 0
    for name, shape in WEIGHTS + STATE:
        size = int(np.prod(shape))
        out[name] = vals[at:at + size].reshape(shape)
        at += size
    assert at == n, (at, n)
    return out


def same_pad(x, k, s, value=0.0):
    """TF's 'same' padding of an NCHW tensor for a k x k window at stride s."""
    ih, iw = x.shape[2], x.shape[3]
    oh, ow = -(-ih // s), -(-iw // s)
    ph, pw = max((oh - 1) * s + k - ih, 0), max((ow - 1) * s + k - iw, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


def conv(x, kernel, bias, k, s=1, groups=1):
    # Keras (KH, KW, C, OC) -> torch (OC, C, KH, KW); depthwise (KH, KW, C, 1) -> (C, 1, KH, KW)
    wt = kernel.permute(2, 3, 0, 1) if groups > 1 else kernel.permute(3, 2, 0, 1)
    return F.conv2d(same_pad(x, k, s), wt, bias, stride=s, groups=groups)


def batchnorm(x, p, name, state):
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    with torch.no_grad():
        state[name + "/moving_mean"] = state[name + "/moving_mean"] * 0.99 + mean * 0.01
        state[name + "/moving_variance"] = state[name + "/moving_variance"] * 0.99 + var * 0.01
    xh = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-3)
    return p[name + "/gamma"][None, :, None, None] * xh + p[name + "/beta"][None, :, None, None]


def forward(x, p, state):
    c = conv(x, p["conv2d/kernel"], p["conv2d/bias"], 3)
    h = F.relu(batchnorm(c, p, "bn", state))
    h = conv(h, p["sep/depthwise_kernel"], None, 3, groups=6)
    h = conv(h, p["sep/pointwise_kernel"], None, 1)
    h = F.relu(batchnorm(h, p, "bn1", state))
    h = F.max_pool2d(same_pad(h, 3, 2, value=-float("inf")), 3, 2)
    r = conv(c, p["conv2d_1/kernel"], p["conv2d_1/bias"], 1, s=2)
    h = h + r
    h = conv(h, p["dw/depthwise_kernel"], None, 3, groups=8)
    h = batchnorm(h, p, "bn2", state)
    h = h.mean(dim=(2, 3))
    return h @ p["dense/kernel"] + p["dense/bias"]


def reference(init, x, y, steps, dtype=torch.float64, eps_outside=False):
    p = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in init.items()
         if k in dict(WEIGHTS)}
    state = {k: torch.tensor(v, dtype=dtype) for k, v in init.items() if k in dict(STATE)}
    v = {k: torch.zeros_like(t) for k, t in p.items()}
    xt = torch.tensor(x, dtype=dtype)[:, None, :, :] / 255.0
    yt = torch.tensor(y, dtype=torch.int64)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(forward(xt, p, state), yt)
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, list(p.values()))
        with torch.no_grad():
            for (k, t), g in zip(p.items(), grads):
                v[k] = 0.9 * v[k] + 0.1 * g * g
                # tf.keras 2 (optimizer_v2): sqrt(v) + eps; Keras 3: sqrt(v + eps)
                t -= 1e-3 * g / (torch.sqrt(v[k]) + 1e-7 if eps_outside else torch.sqrt(v[k] + 1e-7))
    out = {k: t.detach().double().numpy() for k, t in p.items()}
    out.update({k: t.double().numpy() for k, t in state.items()})
    return losses, out


def max_rel(a, b):
    """The largest relative difference over every tensor, as diff-weights measures it."""
    worst, where = 0.0, ""
    for name, _ in WEIGHTS + STATE:
        diff = np.abs(a[name] - b[name]) / np.maximum(np.maximum(np.abs(a[name]), np.abs(b[name])), 1e-3)
        if diff.max() > worst:
            worst, where = float(diff.max()), name
    return worst, where


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="./convnet-dist")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--np", type=int, default=1, help="ranks for convnet-dist (mpirun)")
    ap.add_argument("--epsilon-placement", choices=("inside_sqrt", "outside_sqrt"), default="inside_sqrt",
                    help="RMSprop's [train] epsilon_placement, in both convnet-dist and the reference")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    d = tempfile.mkdtemp(prefix="graph-reference-")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (N, H, W))
    y = rng.integers(0, 3, N)
    write_idx(os.path.join(d, "x.idx"), x)
    write_idx(os.path.join(d, "y.idx"), y)
    for name, epochs in (("init", 0), ("run", a.steps)):
        with open(os.path.join(d, name + ".job"), "w") as f:
            f.write(JOB.format(root=d, n=N, epochs=epochs))
    launch = [binary] if a.np == 1 else ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np",
                                         str(a.np), binary]
    common = ["--set", "checkpoint.path=off", "--set", "train.epsilon_placement=" + a.epsilon_placement]
    outside = a.epsilon_placement == "outside_sqrt"
    subprocess.run([binary, "train", os.path.join(d, "init.job"), "--save",
                    os.path.join(d, "init.weights")] + common, check=True, capture_output=True)
    r = subprocess.run(launch + ["train", os.path.join(d, "run.job"), "--weights",
                                 os.path.join(d, "init.weights"), "--save", os.path.join(d, "final.weights"),
                                 "--set", "train.step_log=" + os.path.join(d, "steps.txt")] + common,
                       capture_output=True, text=True)
    if r.returncode:
        print(r.stdout, r.stderr)
        return 1
    ours_loss = [float(line.split()[2]) for line in open(os.path.join(d, "steps.txt")) if line.strip()]
    ours = read_weights(os.path.join(d, "final.weights"))
    ref_loss, ref = reference(read_weights(os.path.join(d, "init.weights")), x, y, a.steps, eps_outside=outside)
    worst_loss = max(abs(o - r) / abs(r) for o, r in zip(ours_loss, ref_loss))
    print("step  convnet-dist (float32)  PyTorch (float64)  relative")
    for i, (o, r) in enumerate(zip(ours_loss, ref_loss)):
        print(f"{i + 1:4d}  {o:22.9f}  {r:17.9f}  {abs(o - r) / abs(r):.2e}")
    worst_w, where = max_rel(ours, ref)
    # the same reference in float32: how far float32 arithmetic itself lands from float64
    f32_loss, f32 = reference(read_weights(os.path.join(d, "init.weights")), x, y, a.steps, torch.float32,
                              eps_outside=outside)
    f32_w, f32_where = max_rel(f32, ref)
    print(f"PyTorch float32 against float64: losses {max(abs(o - r) / abs(r) for o, r in zip(f32_loss, ref_loss)):.2e}, "
          f"weights {f32_w:.2e} (in {f32_where})")
    print(f"losses: {len(ours_loss)} steps (reference {len(ref_loss)}), max relative difference {worst_loss:.2e}")
    print(f"final weights and moving statistics: max relative difference {worst_w:.2e} (in {where}; "
          "relative to max(|a|, |b|, 1e-3), as diff-weights)")
    # the weights' bound: 1e-5, or float32's own distance from float64 where that is larger
    bound = max(1e-5, f32_w)
    ok = len(ours_loss) == a.steps and worst_loss <= 1e-5 and worst_w <= bound
    print(f"losses agree to 1e-5, weights to {bound:.2e}" if ok else f"DIFFER (losses > 1e-5 or weights > {bound:.2e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
