#!/usr/bin/python3
"""bench_torch.py: the PyTorch side of the training-step benchmark.

Times the same step as build/bin/bench_step (scripts/bench_step.c): a
Llama-family decoder with random float32 weights written by hand (embedding,
RMSNorm, RoPE, grouped-query attention through explicit matmuls + causal
mask + softmax, SwiGLU, tied classifier, q/k/v biases for Qwen2), frozen
base weights, one LoRA (rank 16, alpha 32, PEFT scaling alpha/r) on all
seven projections, mean cross-entropy over every position (targets = next
tokens), loss.backward() and a plain SGD update of the LoRA.

    /usr/bin/python3 scripts/bench_torch.py --shape stories260k|stories15m|
        qwen2.5-0.5b|PATH/config.json [--batch 4] [--seq 256] [--rank 16]
        [--alpha 32] [--steps 3] [--warmup 1] [--threads N] [--json]

Peak memory is the process's ru_maxrss (run one shape per process). Needs
only torch (Debian python3-torch 1.13 works); no transformers.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

SHAPES = {
    "stories260k": dict(arch="llama", dim=64, n_layers=5, n_heads=8, n_kv_heads=4,
                        hidden_dim=172, vocab_size=512, norm_eps=1e-5,
                        rope_theta=10000.0, qkv_bias=False, tied=True),
    "stories15m": dict(arch="llama", dim=288, n_layers=6, n_heads=6, n_kv_heads=6,
                       hidden_dim=768, vocab_size=32000, norm_eps=1e-5,
                       rope_theta=10000.0, qkv_bias=False, tied=True),
}
QWEN05_JSON = os.path.join(HERE, "..", "..", "shared", "assets", "hf-configs",
                           "qwen2.5-0.5b", "config.json")
QWEN05_BUILTIN = dict(arch="qwen2", dim=896, n_layers=24, n_heads=14, n_kv_heads=2,
                      hidden_dim=4864, vocab_size=151936, norm_eps=1e-6,
                      rope_theta=1000000.0, qkv_bias=True, tied=True)
MODULES = ["q", "k", "v", "o", "gate", "up", "down"]


def from_hf_config(path):
    with open(path) as f:
        j = json.load(f)
    heads = j["num_attention_heads"]
    mt = j.get("model_type", "llama")
    c = dict(arch=mt, dim=j["hidden_size"], n_layers=j["num_hidden_layers"],
             n_heads=heads, n_kv_heads=j.get("num_key_value_heads", heads),
             hidden_dim=j["intermediate_size"], vocab_size=j["vocab_size"],
             norm_eps=j.get("rms_norm_eps", 1e-6), rope_theta=j.get("rope_theta", 10000.0),
             qkv_bias=bool(j.get("attention_bias", False)) or mt == "qwen2",
             tied=bool(j.get("tie_word_embeddings", False)))
    if "head_dim" in j:
        c["head_dim"] = j["head_dim"]
    if j.get("rope_scaling"):
        print("bench_torch: note: rope_scaling ignored (random weights, timing only)",
              file=sys.stderr)
    return c


def shape_config(shape):
    key = shape.lower()
    if key in SHAPES:
        return dict(SHAPES[key]), "built-in"
    if key == "qwen2.5-0.5b":
        for p in (os.path.join("..", "shared", "assets", "hf-configs", "qwen2.5-0.5b",
                               "config.json"), QWEN05_JSON):
            if os.path.exists(p):
                return from_hf_config(p), os.path.normpath(p)
        return dict(QWEN05_BUILTIN), "built-in copy (../shared absent)"
    if shape.endswith(".json"):
        return from_hf_config(shape), shape
    sys.exit(f"bench_torch: --shape: unknown '{shape}'")


def dims(c, m):
    """(out, in) of module m."""
    D, F_, QD, KD = c["dim"], c["hidden_dim"], c["n_heads"] * c["head_dim"], \
        c["n_kv_heads"] * c["head_dim"]
    return {"q": (QD, D), "k": (KD, D), "v": (KD, D), "o": (D, QD),
            "gate": (F_, D), "up": (F_, D), "down": (D, F_)}[m]


class Model:
    """Plain tensors; base frozen, LoRA A/B trainable."""

    def __init__(self, c, rank, alpha, seed=1):
        g = torch.Generator().manual_seed(seed)
        std = 0.02
        self.c = c
        self.scale = alpha / rank
        D, V = c["dim"], c["vocab_size"]
        self.emb = torch.randn(V, D, generator=g) * std
        self.lm_head = self.emb if c["tied"] else torch.randn(V, D, generator=g) * std
        self.final_norm = torch.ones(D)
        self.layers = []
        self.lora = []
        for _ in range(c["n_layers"]):
            lw = {"attn_norm": torch.ones(D), "ffn_norm": torch.ones(D)}
            la = {}
            for m in MODULES:
                out, inp = dims(c, m)
                lw[m] = torch.randn(out, inp, generator=g) * std
                if c["qkv_bias"] and m in ("q", "k", "v"):
                    lw["b" + m] = torch.randn(out, generator=g) * std
                bound = 1.0 / math.sqrt(inp)
                A = (torch.rand(rank, inp, generator=g) * 2 - 1) * bound
                B = torch.randn(out, rank, generator=g) * 0.01  # non-zero: a mid-training step
                la[m] = (A.requires_grad_(), B.requires_grad_())
            self.layers.append(lw)
            self.lora.append(la)
        hd = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        self.inv_freq = inv

    def params(self):
        return [t for la in self.lora for ab in la.values() for t in ab]

    def linear(self, l, m, x):
        lw = self.layers[l]
        A, B = self.lora[l][m]
        y = F.linear(x, lw[m], lw.get("b" + m))
        return y + F.linear(F.linear(x, A), B) * self.scale

    def rmsnorm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["norm_eps"]) * w

    def forward(self, tokens, targets):
        c = self.c
        Bsz, T = tokens.shape
        H, Hkv, hd = c["n_heads"], c["n_kv_heads"], c["head_dim"]
        pos = torch.arange(T, dtype=torch.float64)
        ang = torch.outer(pos, self.inv_freq)
        ang = torch.cat([ang, ang], dim=-1)
        cos, sin = ang.cos().float(), ang.sin().float()  # (T, hd)
        mask = torch.full((T, T), float("-inf")).triu(1)

        def rope(x):  # (B, h, T, hd), HF rotate_half
            x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
            return x * cos + torch.cat([-x2, x1], dim=-1) * sin

        x = F.embedding(tokens, self.emb)
        for l, lw in enumerate(self.layers):
            xn = self.rmsnorm(x, lw["attn_norm"])
            q = self.linear(l, "q", xn).view(Bsz, T, H, hd).transpose(1, 2)
            k = self.linear(l, "k", xn).view(Bsz, T, Hkv, hd).transpose(1, 2)
            v = self.linear(l, "v", xn).view(Bsz, T, Hkv, hd).transpose(1, 2)
            q, k = rope(q), rope(k)
            if Hkv != H:
                k = k.repeat_interleave(H // Hkv, dim=1)
                v = v.repeat_interleave(H // Hkv, dim=1)
            s = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(hd)) + mask
            att = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(Bsz, T, H * hd)
            x = x + self.linear(l, "o", att)
            xn = self.rmsnorm(x, lw["ffn_norm"])
            h = F.silu(self.linear(l, "gate", xn)) * self.linear(l, "up", xn)
            x = x + self.linear(l, "down", h)
        x = self.rmsnorm(x, self.final_norm)
        logits = F.linear(x, self.lm_head)
        return F.cross_entropy(logits.view(-1, c["vocab_size"]), targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int,
                    default=int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count())
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    c, src = shape_config(a.shape)
    c.setdefault("head_dim", c["dim"] // c["n_heads"])
    model = Model(c, a.rank, a.alpha)
    params = model.params()
    g = torch.Generator().manual_seed(4)
    seq = torch.randint(0, c["vocab_size"], (a.batch, a.seq + 1), generator=g)
    tokens, targets = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()

    lr = 1e-4
    t_fwd = t_bwd = t_upd = t_first = 0.0
    t_best = float("inf")
    loss = None
    for it in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        for p in params:
            p.grad = None
        loss = model.forward(tokens, targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        with torch.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
        t3 = time.perf_counter()
        if it == 0:
            t_first = t3 - t0
        if it < a.warmup:
            continue
        t_fwd += t1 - t0
        t_bwd += t2 - t1
        t_upd += t3 - t2
        t_best = min(t_best, t3 - t0)
    t_all = t_fwd + t_bwd + t_upd
    n_tok = a.batch * a.seq
    ru = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = ru.ru_maxrss / 1024.0  # kB on Linux
    r = {"impl": "torch", "torch": torch.__version__, "shape": a.shape, "config_source": src,
         "batch": a.batch, "seq": a.seq, "rank": a.rank, "alpha": a.alpha, "steps": a.steps,
         "warmup": a.warmup, "threads": torch.get_num_threads(),
         "lora_params": sum(p.numel() for p in params),
         "tok_s": n_tok * a.steps / t_all, "s_per_step": t_all / a.steps,
         "fwd_s": t_fwd / a.steps, "bwd_s": t_bwd / a.steps, "update_s": t_upd / a.steps,
         "first_step_s": t_first, "best_step_s": t_best, "peak_rss_mb": peak_mb, "loss": float(loss),
         "cpu_s": ru.ru_utime + ru.ru_stime}
    if a.json:
        print(json.dumps(r))
    else:
        print(f"PyTorch {torch.__version__}, shape {a.shape} ({src}), {r['threads']} threads")
        print(f"  tokens/s   {r['tok_s']:10.1f}")
        print(f"  s/step     {r['s_per_step']:10.4f}  (forward {r['fwd_s']:.4f}, "
              f"backward {r['bwd_s']:.4f}, update {r['update_s']:.4f}; best {t_best:.4f}; "
              f"first {t_first:.4f})")
        print(f"  peak RSS   {peak_mb:10.1f} MiB")
        print(f"  loss       {r['loss']:10.4f}")


if __name__ == "__main__":
    main()
