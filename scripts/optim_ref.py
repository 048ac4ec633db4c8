#!/usr/bin/python3
"""optim_ref.py: PyTorch's optimizer pieces on random inputs, the reference
for tests/test_optim.c.

    /usr/bin/python3 scripts/optim_ref.py OUTDIR

Runs Debian's torch (1.13) on seeded random float32 inputs and writes
OUTDIR/optim.safetensors; its metadata "cases" is the JSON description below
and every tensor is named "<case>.<what>".

adamw: torch.optim.AdamW (foreach=False, amsgrad=False, float32 tensors).
  {"name", "beta1", "beta2", "eps", "weight_decay", "steps",
   "params": [{"n", "decay"}]}  decay 0 = a param group with weight_decay 0.
  <case>.lr           F64 (steps)    the learning rate of each step
  <case>.<i>.init     F32 (n)        parameter i before the first step
  <case>.<i>.grad     F32 (steps, n) its gradient at each step
  <case>.<i>.param    F32 (steps, n) the parameter after each step
  <case>.<i>.exp_avg, <case>.<i>.exp_avg_sq   F32 (steps, n) AdamW's state
                                     after each step
schedule: torch.optim.lr_scheduler on an SGD optimizer, one lr per step (read
  before optimizer.step(), scheduler.step() after):
  warmup W > 0: LinearLR(start_factor=1/W, end_factor=1, total_iters=W-1),
  then (SequentialLR, milestone W) the decay over total-W steps:
  cosine CosineAnnealingLR(T_max=total-W, eta_min=min_ratio*lr), linear
  LinearLR(1, min_ratio, total-W), constant ConstantLR(factor=1).
  {"name", "kind", "lr", "total", "warmup", "min_ratio"}
  <case>.lr           F64 (total)
clip: torch.nn.utils.clip_grad_norm_(params, max_norm) (float32).
  {"name", "max_norm", "sizes": [n...]}
  <case>.<i>.grad     F32 (n)  before;  <case>.<i>.clipped F32 (n) after
  <case>.norm         F64 (1)  the total norm it returned (computed in float32)
"""
import json
import math
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref  # noqa: E402  (st_write)

ADAMW = [
    # PyTorch's defaults except weight decay; one tensor without decay
    dict(name="adamw_default", beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01,
         steps=200, params=[dict(n=300, decay=1), dict(n=97, decay=1), dict(n=64, decay=0)],
         lr="cosine"),
    # gradients as small as eps (eps placement shows), strong decay,
    # short-memory betas, exact zero gradients on some elements
    dict(name="adamw_small_grads", beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1,
         steps=150, params=[dict(n=128, decay=1), dict(n=50, decay=0)], lr="constant"),
]

SCHEDULES = [
    dict(name="cosine_warmup", kind="cosine", lr=1e-3, total=100, warmup=10, min_ratio=0.1),
    dict(name="cosine_nowarmup", kind="cosine", lr=3e-4, total=50, warmup=0, min_ratio=0.0),
    dict(name="linear_warmup", kind="linear", lr=2e-3, total=60, warmup=5, min_ratio=0.0),
    dict(name="linear_floor", kind="linear", lr=1e-3, total=40, warmup=0, min_ratio=0.5),
    dict(name="linear_warmup1", kind="linear", lr=1e-3, total=25, warmup=1, min_ratio=0.2),
    dict(name="constant_warmup", kind="constant", lr=1e-3, total=30, warmup=7, min_ratio=0.0),
    dict(name="constant", kind="constant", lr=5e-4, total=20, warmup=0, min_ratio=0.0),
    dict(name="cosine_all_warmup", kind="cosine", lr=1e-3, total=8, warmup=8, min_ratio=0.0),
]

CLIP = [
    dict(name="clip_above", max_norm=1.0, sizes=[500, 37, 1], scale=0.1),
    dict(name="clip_below", max_norm=0.5, sizes=[200, 20], scale=0.005),
    dict(name="clip_small_norm", max_norm=0.05, sizes=[64, 64], scale=0.02),
    dict(name="clip_large", max_norm=2.0, sizes=[100000, 3000], scale=0.05),
    # max_norm above the norm by less than torch's 1e-6: torch still scales
    dict(name="clip_within_eps", max_norm=None, sizes=[300], scale=0.02, above=5e-7),
]


def schedule_lrs(s):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=s["lr"])
    W, total, lo = s["warmup"], s["total"], s["min_ratio"]
    if s["kind"] == "cosine":
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - W,
                                                           eta_min=lo * s["lr"]) if total > W else None
    elif s["kind"] == "linear":
        decay = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=lo,
                                                  total_iters=total - W) if total > W else None
    else:
        decay = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    if W > 0:
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / W, end_factor=1.0,
                                                 total_iters=W - 1)
        sched = (torch.optim.lr_scheduler.SequentialLR(opt, [warm, decay], milestones=[W])
                 if decay is not None and total > W else warm)
    else:
        sched = decay
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out, dtype=np.float64)


def adamw_case(c, tensors):
    S = c["steps"]
    if c["lr"] == "cosine":
        lrs = schedule_lrs(dict(kind="cosine", lr=1e-2, total=S, warmup=20, min_ratio=0.05))
    else:
        lrs = np.full(S, 3e-3)
    params, groups = [], []
    for i, p in enumerate(c["params"]):
        init = torch.randn(p["n"], dtype=torch.float32)
        tensors.append((f"{c['name']}.{i}.init", init.numpy(), "F32"))
        t = torch.nn.Parameter(init.clone())
        params.append(t)
        groups.append(dict(params=[t], weight_decay=c["weight_decay"] if p["decay"] else 0.0))
    opt = torch.optim.AdamW(groups, lr=float(lrs[0]), betas=(c["beta1"], c["beta2"]),
                            eps=c["eps"], foreach=False)
    small = c["name"] == "adamw_small_grads"
    rec = {k: [[] for _ in params] for k in ("grad", "param", "exp_avg", "exp_avg_sq")}
    for s in range(S):
        for i, t in enumerate(params):
            scale = math.exp(0.7 * float(torch.randn(1)))
            g = torch.randn(t.numel(), dtype=torch.float32) * scale
            if small:
                g = g * 1e-6
                g[torch.rand(t.numel()) < 0.2] = 0.0
            t.grad = g
            rec["grad"][i].append(g.numpy().copy())
        for grp in opt.param_groups:
            grp["lr"] = float(lrs[s])
        opt.step()
        for i, t in enumerate(params):
            st = opt.state[t]
            rec["param"][i].append(t.detach().numpy().copy())
            rec["exp_avg"][i].append(st["exp_avg"].numpy().copy())
            rec["exp_avg_sq"][i].append(st["exp_avg_sq"].numpy().copy())
    tensors.append((f"{c['name']}.lr", lrs, "F64"))
    for k, per in rec.items():
        for i, rows in enumerate(per):
            tensors.append((f"{c['name']}.{i}.{k}", np.stack(rows), "F32"))
    return {k: v for k, v in c.items() if k != "lr"}


def clip_case(c, tensors):
    grads = [torch.randn(n, dtype=torch.float32) * c["scale"] for n in c["sizes"]]
    params = [torch.nn.Parameter(torch.zeros(n, dtype=torch.float32)) for n in c["sizes"]]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    max_norm = c["max_norm"]
    if max_norm is None:  # just above the float32 norm torch computes
        norm = torch.norm(torch.stack([torch.norm(g, 2.0) for g in grads]), 2.0)
        max_norm = float(norm) + c["above"]
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    for i, (p, g) in enumerate(zip(params, grads)):
        tensors.append((f"{c['name']}.{i}.grad", g.numpy(), "F32"))
        tensors.append((f"{c['name']}.{i}.clipped", p.grad.numpy(), "F32"))
    tensors.append((f"{c['name']}.norm", np.array([float(total)]), "F64"))
    return dict(name=c["name"], max_norm=max_norm, sizes=c["sizes"])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: optim_ref.py OUTDIR")
    torch.manual_seed(20261203)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # SequentialLR's step(0) deprecation notice
    tensors = []
    desc = dict(adamw=[adamw_case(c, tensors) for c in ADAMW],
                schedule=[],
                clip=[clip_case(c, tensors) for c in CLIP])
    for s in SCHEDULES:
        tensors.append((f"{s['name']}.lr", schedule_lrs(s), "F64"))
        desc["schedule"].append(s)
    torch_ref.st_write(os.path.join(sys.argv[1], "optim.safetensors"), tensors,
                       {"cases": json.dumps(desc), "torch": torch.__version__})


if __name__ == "__main__":
    main()
