#!/usr/bin/python3
"""PyTorch's bfloat16 peer for make bench: the Keras-book models of ../shared/bench/torch_bench.py
(its builders, batches, initialisation and optimizer, imported, not copied), run channels-last under
torch.autocast("cpu", dtype=torch.bfloat16): PyTorch's counterpart of Keras's mixed_bfloat16
policy (float32 weights and optimizer; convolutions and matmuls in bfloat16; oneDNN picks
brgconv/jit_bf16 avx512_core_bf16 where the CPU has AVX512_BF16). Prints torch_bench.py's JSON line
with "autocast": "bfloat16". The mini-Xception's peer is bench/torch_xception.py --autocast.
Usage: /usr/bin/python3 bench/torch_autocast.py MODEL [--threads 2] [--batch B]
                                                [--steps S] [--reps R] [--warmup W]
MODEL: mnist | dogs | vgg_fwd | vgg_block5 | vgg_finetune
"""
import argparse, json, os, statistics, sys, time
import torch

PEER_DIR = os.environ.get("CONVNET_PEER_BENCH", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "..", "..", "shared", "bench"))
sys.path.insert(0, PEER_DIR)
import flops  # noqa: E402  (the peer's FLOP counts)
import torch_bench  # noqa: E402  (the peer's model builders)


def time_steps(step, warmup, steps, reps, batch):
    """images/s of reps chunks of steps calls after warmup calls: median, min, max."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch / (time.perf_counter() - t0))
    return statistics.median(rates), min(rates), max(rates)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    batch = a.batch or torch_bench.DEFAULT_BATCH[a.model]
    m, params, batch_fn, loss_fn, lr = torch_bench.build(a.model, batch)
    m.apply(torch_bench.keras_init)
    cl = torch.channels_last
    m = m.to(memory_format=cl)
    opt = torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7) if params is not None else None

    def step():
        x, y = batch_fn()
        x = x.contiguous(memory_format=cl)
        if opt is None:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                m(x)
            return
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        # the loss in float32, as Keras's policy keeps it
        loss_fn(out.float(), y).backward()
        opt.step()

    if a.model != "vgg_fwd":
        m.train()
    med, lo, hi = time_steps(step, a.warmup, a.steps, a.reps, batch)
    fl = flops.step_flops(a.model)
    print(json.dumps(dict(model=a.model, batch=batch, threads=a.threads, channels_last=True, autocast="bfloat16",
                          steps=a.steps, reps=a.reps, img_s_median=round(med, 2), img_s_min=round(lo, 2),
                          img_s_max=round(hi, 2), gflop_per_img=round(fl / 1e9, 4),
                          gflops_median=round(med * fl / 1e9, 1), torch=torch.__version__)), flush=True)


if __name__ == "__main__":
    main()
