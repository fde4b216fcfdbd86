#!/usr/bin/python3
"""PyTorch peer of jobs/mini-xception.job for make bench: the book's mini Xception-like model
(Deep Learning with Python, 2nd ed., 9.3.5), trained on random 180x180x3 batches of 32 with
RMSprop, as ../shared/bench/torch_bench.py times the chapter-8 models (same JSON line).
Layers as Keras builds them (the book's use_bias=False on every convolution, as the job):
Conv2D(32, 5) valid without activation; per block (32 .. 512) BatchNormalization, ReLU,
SeparableConv2D (a depthwise 3x3 conv with groups = C, then a 1x1 conv), twice;
MaxPooling2D(3, 2, same) and a 1x1 stride-2 residual conv, added;
GlobalAveragePooling2D, Dropout(0.5), Dense(1). BatchNorm2d(momentum 0.01, eps 1e-3) is Keras's
momentum 0.99 in PyTorch's convention. No augmentation here (convnet-dist's side runs the job's
RandomFlip/RandomRotation/RandomZoom, so the comparison is conservative for it).
--autocast runs it under torch.autocast("cpu", dtype=torch.bfloat16), the loss in float32: the
peer of our [train] precision = mixed_bfloat16 (bench/torch_autocast.py does the same for the
chapter-8 models).
Usage: /usr/bin/python3 bench/torch_xception.py [--threads 2] [--steps S] [--reps R] [--warmup W]
                                                [--autocast]
"""
import argparse, contextlib, json, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Separable(nn.Module):
    def __init__(self, ci, co):
        super().__init__()
        self.dw = nn.Conv2d(ci, ci, 3, padding=1, groups=ci, bias=False)
        self.pw = nn.Conv2d(ci, co, 1, bias=False)

    def forward(self, x):
        return self.pw(self.dw(x))


class Block(nn.Module):
    def __init__(self, ci, co):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(ci, eps=1e-3, momentum=0.01), nn.ReLU(), Separable(ci, co),
                                  nn.BatchNorm2d(co, eps=1e-3, momentum=0.01), nn.ReLU(), Separable(co, co),
                                  nn.MaxPool2d(3, 2, padding=1))
        self.res = nn.Conv2d(ci, co, 1, stride=2, bias=False)

    def forward(self, x):
        return self.body(x) + self.res(x)


def model():
    layers, ci = [nn.Conv2d(3, 32, 5, bias=False)], 32
    for co in (32, 64, 128, 256, 512):
        layers.append(Block(ci, co))
        ci = co
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(512, 1)]
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--autocast", action="store_true", help="bfloat16 autocast (mixed precision)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    batch = 32
    m = model().to(memory_format=torch.channels_last)
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(mod.weight)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
    n_params = sum(p.numel() for p in m.parameters())
    opt = torch.optim.RMSprop(m.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    x = (torch.rand(batch, 3, 180, 180) * (1 / 255.0) * 255).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch, 1)).float()
    m.train()

    def mixed():
        return torch.autocast("cpu", dtype=torch.bfloat16) if a.autocast else contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with mixed():
            out = m(x)
        F.binary_cross_entropy_with_logits(out.float(), y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    rates = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        rates.append(a.steps * batch / (time.perf_counter() - t0))
    print(json.dumps(dict(model="mini_xception", batch=batch, threads=a.threads, params=n_params,
                          autocast="bfloat16" if a.autocast else None,
                          img_s_median=round(statistics.median(rates), 2), img_s_min=round(min(rates), 2),
                          img_s_max=round(max(rates), 2), torch=torch.__version__)), flush=True)


if __name__ == "__main__":
    main()
