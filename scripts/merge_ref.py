#!/usr/bin/python3
"""merge_ref.py: an independent float64 PyTorch reference for the LoRA merge
methods of calibrate/MERGING.md (linear, concat, svd, ties, dare_linear,
dare_ties, slerp, lorahub, learned), written from that document, not from
kernels/merge.c.

Run it with Debian's torch (1.13):

    /usr/bin/python3 scripts/merge_ref.py OUTDIR      # write the test data
    /usr/bin/python3 scripts/merge_ref.py --self-check

OUTDIR gets:

  model/config.json, model/model.safetensors
                 a tiny random Llama (F32, HF layout; written with
                 torch_ref.py's helpers) whose module shapes are all
                 different: q, o (24, 24), k, v (12, 24), gate, up (40, 24),
                 down (24, 40); 3 layers.
  lora0/         PEFT LoRA r=2 alpha=4 (s = 2), every module and layer
  lora1/         PEFT LoRA r=4 alpha=6 rsLoRA (s = 6/sqrt(4) = 3), modules
                 q, v, o, gate, down on layers 0 and 2 only
  lora2/         PEFT LoRA r=2 alpha=4 (s = 2, as lora0: lorahub needs equal
                 ranks and scales), every layer, every module but down
                 (scales are exact in float32 so the C LoRA's float scale
                 equals alpha/r computed in float64)
  cases.json     {"n_layers": L, "loras": ["lora0", ...], "cases": [
                   {"name", "method", "adapters": [lora indices, in merge
                    order], "weights", "density", "lambda", "ties_mean":
                    "count"|"weight", "seed" (number), "seed_str" (the same,
                    decimal string: exact beyond 2^53), "svd_rank", "t",
                    "coef" (learned only: per merged adapter a list of L*7
                    float32-exact values, layout l*7 + m)}, ...]}
  expected/<case>.safetensors
                 F64, for every (layer, module) that at least one of the
                 case's adapters adapts (others omitted):
                   layers.<l>.<short>   the merged delta (out, in): what
                                        merge_module_delta gives, the product
                                        B A of merge_to_lora's LoRA for the
                                        LoRA-form methods, and what
                                        merge_into_model adds. With svd_rank
                                        (svd, ties/dare_*) it is the rank-R
                                        truncated-SVD product.
                   full.layers.<l>.<short>
                                        ties/dare_* with svd_rank only: the
                                        delta before the truncation
                 short = q, k, v, o, gate, up, down.

Every expected value is computed from the float32 values read back from
the LoRA files, in float64, so the C code sees the same inputs.

--self-check verifies the reference against itself (identities the spec
implies: concat == linear, dare with density 1 == linear, ties with density
1 and one adapter == that adapter's weighted task vector, slerp end points,
full-rank svd == linear, the splitmix64 test vector, DARE keep rate, ...)
and exits non-zero if any fails.
"""

import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref  # noqa: E402  (st_write/st_read, Config, write_lora, ...)

torch.set_default_dtype(torch.float64)

MODS = ["q", "k", "v", "o", "gate", "up", "down"]  # MERGING.md's m = 0..6
MOD_IDX = {m: i for i, m in enumerate(MODS)}

CFG = dict(arch="llama", D=24, L=3, H=4, Hkv=2, F=40, V=41)
LORAS = [
    dict(r=2, alpha=4.0, rslora=False, modules=MODS, layers=None),
    dict(r=4, alpha=6.0, rslora=True, modules=["q", "v", "o", "gate", "down"],
         layers=[0, 2]),
    dict(r=2, alpha=4.0, rslora=False, modules=["q", "k", "v", "o", "gate", "up"],
         layers=None),
]


def case(name, method, adapters, weights=None, density=1.0, lam=1.0,
         ties_mean="count", seed=0, svd_rank=0, t=0.5, coef=None):
    return {"name": name, "method": method, "adapters": adapters,
            "weights": weights if weights is not None else [1.0] * len(adapters),
            "density": density, "lambda": lam, "ties_mean": ties_mean,
            "seed": seed, "seed_str": str(seed), "svd_rank": svd_rank, "t": t,
            "coef": coef}


BIG_SEED = 0xDEADBEEFCAFEF00D  # > 2^63: the seed is a full 64-bit value

CASES = [
    case("linear", "linear", [0, 1, 2], [0.7, -0.4, 1.2]),
    case("concat", "concat", [0, 1, 2], [0.7, -0.4, 1.2]),
    case("svd", "svd", [0, 1], [1.0, 0.5], svd_rank=3),
    case("ties_count", "ties", [0, 1, 2], density=0.3),
    case("ties_count_neg_l07", "ties", [0, 1, 2], [0.9, -0.6, 1.1],
         density=0.3, lam=0.7),
    case("ties_weight", "ties", [0, 1, 2], [0.9, 0.6, 1.3], density=0.3,
         ties_mean="weight"),
    case("ties_weight_l07", "ties", [1, 2], [1.5, 0.5], density=0.3, lam=0.7,
         ties_mean="weight"),
    case("dare_linear", "dare_linear", [0, 1, 2], [0.7, -0.4, 1.2],
         density=0.5, seed=7),
    case("dare_linear_d1", "dare_linear", [0, 1, 2], [0.7, -0.4, 1.2],
         density=1.0, seed=7),
    case("dare_linear_bigseed", "dare_linear", [2, 0], [1.0, 0.5],
         density=0.35, lam=1.5, seed=BIG_SEED),
    case("dare_ties_count", "dare_ties", [0, 1, 2], [1.0, 0.8, 1.2],
         density=0.6, seed=11),
    case("dare_ties_weight", "dare_ties", [0, 1, 2], [1.0, 0.8, 1.2],
         density=0.6, lam=0.8, ties_mean="weight", seed=11),
    case("slerp", "slerp", [0, 1], t=0.3),
    case("lorahub", "lorahub", [0, 2], [0.6, -0.4]),
    case("ties_svd", "ties", [0, 1, 2], [1.0, 0.8, 1.2], density=0.3,
         svd_rank=2),
    case("dare_linear_svd", "dare_linear", [0, 1, 2], [0.7, -0.4, 1.2],
         density=0.5, seed=7, svd_rank=3),
    case("learned", "learned", [0, 1, 2]),  # coef filled in by make_cases
]


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------

class Lora:
    """A LoRA read back from its PEFT folder: float64 tensors of the stored
    float32 values; A[(l, m)] (r, in), B[(l, m)] (out, r)."""

    def __init__(self, d, cfg):
        with open(os.path.join(d, "adapter_config.json")) as f:
            ac = json.load(f)
        t, _ = torch_ref.st_read(os.path.join(d, "adapter_model.safetensors"))
        self.r = ac["r"]
        self.scale = ac["lora_alpha"] / (math.sqrt(self.r) if ac.get("use_rslora")
                                         else self.r)
        self.A, self.B = {}, {}
        for l in range(cfg.L):
            for m in MODS:
                na = torch_ref.lora_name(l, m, "A")
                if na in t:
                    self.A[(l, m)] = torch.tensor(t[na])
                    self.B[(l, m)] = torch.tensor(t[torch_ref.lora_name(l, m, "B")])
        assert 2 * len(self.A) == len(t), "unrecognised tensors in " + d

    def adapts(self, l, m):
        return (l, m) in self.A

    def tau(self, cfg, l, m):
        """task vector s B A (out, in); zeros where not adapted."""
        if not self.adapts(l, m):
            return torch.zeros(cfg.dims(m))
        return self.scale * (self.B[(l, m)] @ self.A[(l, m)])


# ---------------------------------------------------------------------------
# the methods, per (layer, module), straight from MERGING.md
# ---------------------------------------------------------------------------

M64 = (1 << 64) - 1


def splitmix64_int(x):
    """Scalar splitmix64 with Python ints (the definition, for checking)."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def splitmix64_np(x):
    """Vectorised splitmix64 on a numpy uint64 array (wraps mod 2^64)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def dare_stream(seed, l, m, i):
    return (seed ^ (((l * 7 + MOD_IDX[m]) * 16 + i) << 40)) & M64


def dare_mask(seed, l, m, i, d, numel):
    """(numel) float64 0/1 mask of merged adapter i (its position in the
    merge) for element e = row * in + col."""
    if d >= 1:
        return np.ones(numel)
    stream = np.uint64(dare_stream(seed, l, m, i))
    with np.errstate(over="ignore"):
        x = stream + np.arange(numel, dtype=np.uint64)
    u = splitmix64_np(x) >> np.uint64(32)
    thr = np.uint64(math.floor(d * 2.0 ** 32))
    return (u < thr).astype(np.float64)


def trim(t, d):
    """TIES trim: keep the k = floor(d * numel) largest |values|, equal
    magnitudes at the cut by increasing element index (stable sort)."""
    flat = t.reshape(-1).numpy()
    k = int(math.floor(d * flat.size))
    order = np.argsort(-np.abs(flat), kind="stable")
    out = np.zeros_like(flat)
    out[order[:k]] = flat[order[:k]]
    return torch.tensor(out).reshape(t.shape)


def elect_mean(ts, ws, mean, lam):
    """TIES steps 3 and 4 on weighted (trimmed or DARE'd) t_i."""
    total = ts[0].clone()
    for t in ts[1:]:
        total = total + t
    sigma = torch.where(total >= 0, 1.0, -1.0)
    num = torch.zeros_like(total)
    cnt = torch.zeros_like(total)
    wsum = torch.zeros_like(total)
    for t, w in zip(ts, ws):
        a = (torch.sign(t) == sigma).to(t.dtype)  # sign 0 never agrees
        num = num + a * t
        cnt = cnt + a
        wsum = wsum + a * w
    if mean == "count":
        den = torch.clamp(cnt, min=1.0)
    else:
        den = torch.where(wsum == 0, torch.ones_like(wsum), wsum)
    return lam * num / den


def svd_product(M, R):
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return (U[:, :R] * S[:R]) @ Vh[:R]


def slerp(v0, v1, t):
    n0, n1 = v0.norm().item(), v1.norm().item()
    if n0 == 0 or n1 == 0:
        return (1 - t) * v0 + t * v1
    c = max(-1.0, min(1.0, (v0 * v1).sum().item() / (n0 * n1)))
    if abs(c) > 0.9995:
        return (1 - t) * v0 + t * v1
    th = math.acos(c)
    return (math.sin((1 - t) * th) / math.sin(th)) * v0 + \
        (math.sin(t * th) / math.sin(th)) * v1


def module_delta(c, los, cfg, l, m):
    """-> (final delta, delta before the svd_rank truncation or None) for
    one (layer, module), or None when no merged adapter adapts it."""
    if not any(lo.adapts(l, m) for lo in los):
        return None
    meth, ws, n = c["method"], c["weights"], len(los)
    taus = [lo.tau(cfg, l, m) for lo in los]
    if meth in ("linear", "concat", "svd"):
        dw = sum(w * t for w, t in zip(ws, taus))
    elif meth == "learned":
        co = [c["coef"][i][l * 7 + MOD_IDX[m]] for i in range(n)]
        dw = sum(ci * w * t for ci, w, t in zip(co, ws, taus))
    elif meth == "ties":
        ts = [w * trim(t, c["density"]) for w, t in zip(ws, taus)]
        dw = elect_mean(ts, ws, c["ties_mean"], c["lambda"])
    elif meth in ("dare_linear", "dare_ties"):
        d = c["density"]
        ts = []
        for i, (w, t) in enumerate(zip(ws, taus)):
            mk = torch.tensor(dare_mask(c["seed"], l, m, i, d, t.numel())).reshape(t.shape)
            ts.append(w * mk * t / d)
        if meth == "dare_linear":
            dw = c["lambda"] * sum(ts)
        else:
            dw = elect_mean(ts, ws, c["ties_mean"], c["lambda"])
    elif meth == "slerp":
        assert n == 2 and ws == [1.0, 1.0]
        dw = slerp(taus[0], taus[1], c["t"])
    elif meth == "lorahub":
        r, s = los[0].r, los[0].scale
        assert all(lo.r == r and lo.scale == s for lo in los)
        out, inp = cfg.dims(m)
        A, B = torch.zeros(r, inp), torch.zeros(out, r)
        for w, lo in zip(ws, los):
            if lo.adapts(l, m):
                A = A + w * lo.A[(l, m)]
                B = B + w * lo.B[(l, m)]
        dw = s * (B @ A)
    else:
        raise ValueError(meth)
    if c["svd_rank"] > 0:
        return svd_product(dw, c["svd_rank"]), dw
    return dw, None


def case_deltas(c, loras, cfg):
    """{(l, m): (delta, untruncated or None)} for the adapted modules."""
    los = [loras[i] for i in c["adapters"]]
    out = {}
    for l in range(cfg.L):
        for m in MODS:
            r = module_delta(c, los, cfg, l, m)
            if r is not None:
                out[(l, m)] = r
    return out


# ---------------------------------------------------------------------------
# writing the test data
# ---------------------------------------------------------------------------

def make_inputs(outdir):
    """Writes model/ and lora*/; returns (Config, [Lora])."""
    torch.manual_seed(4242)
    cfg = torch_ref.Config(**CFG)
    torch_ref.write_model(os.path.join(outdir, "model"), cfg,
                          torch_ref.make_base(cfg), "F32", 1)
    for i, spec in enumerate(LORAS):
        torch_ref.write_lora(os.path.join(outdir, "lora%d" % i), cfg, spec)
    with open(os.path.join(outdir, "model", "config.json")) as f:
        cfg = torch_ref.Config.from_hf(json.load(f))
    loras = [Lora(os.path.join(outdir, "lora%d" % i), cfg) for i in range(len(LORAS))]
    return cfg, loras


def make_cases(cfg):
    gen = torch.Generator().manual_seed(99)
    cases = [dict(c) for c in CASES]
    for c in cases:
        if c["method"] == "learned":
            # float32-exact coefficients in [-0.5, 1.5), one per (adapter,
            # layer, module), the C side stores them as float
            c["coef"] = [[float(np.float32(v)) for v in
                          (torch.rand(cfg.L * 7, generator=gen) * 2 - 0.5).tolist()]
                         for _ in c["adapters"]]
    return cases


def write_all(outdir):
    os.makedirs(os.path.join(outdir, "expected"), exist_ok=True)
    cfg, loras = make_inputs(outdir)
    cases = make_cases(cfg)
    torch_ref.write_json(os.path.join(outdir, "cases.json"), {
        "n_layers": cfg.L, "loras": ["lora%d" % i for i in range(len(loras))],
        "cases": cases})
    for c in cases:
        deltas = case_deltas(c, loras, cfg)
        items = []
        for (l, m), (dw, full) in deltas.items():
            items.append(("layers.%d.%s" % (l, m), dw.numpy(), "F64"))
            if full is not None and c["method"] != "svd":
                items.append(("full.layers.%d.%s" % (l, m), full.numpy(), "F64"))
        torch_ref.st_write(os.path.join(outdir, "expected", c["name"] + ".safetensors"),
                           items)
        mx = max(float(dw.abs().max()) for dw, _ in deltas.values())
        print("merge_ref: %-20s %-11s %2d modules, max|delta| %.3f"
              % (c["name"], c["method"], len(deltas), mx), file=sys.stderr)


# ---------------------------------------------------------------------------
# self-check
# ---------------------------------------------------------------------------

def self_check():
    import tempfile
    fails = []

    def check(label, ok, detail=""):
        print("self-check %-58s %s %s" % (label, "ok" if ok else "FAIL", detail),
              file=sys.stderr)
        if not ok:
            fails.append(label)

    def maxdiff(a, b):
        keys = set(a) | set(b)
        if set(a) != set(b):
            return float("inf")
        return max(float((a[k][0] - b[k][0]).abs().max()) for k in keys)

    # splitmix64: the standard first output for state 0, and numpy == ints
    check("splitmix64(0) == 0xE220A8397B1DCDAF",
          splitmix64_int(0) == 0xE220A8397B1DCDAF)
    xs = [0, 1, 7, M64, 0x123456789ABCDEF0, BIG_SEED]
    check("splitmix64 numpy == python ints",
          all(int(v) == splitmix64_int(x) for x, v in
              zip(xs, splitmix64_np(np.array(xs, dtype=np.uint64)))))
    # mask built element by element from the definition, with ints
    seed, l, m, i, d, n = BIG_SEED, 2, "down", 1, 0.35, 500
    st = dare_stream(seed, l, m, i)
    thr = math.floor(d * 2 ** 32)
    slow = [1.0 if (splitmix64_int((st + e) & M64) >> 32) < thr else 0.0 for e in range(n)]
    check("DARE mask vectorised == scalar definition",
          np.array_equal(np.array(slow), dare_mask(seed, l, m, i, d, n)))
    big = dare_mask(11, 1, "gate", 0, 0.6, 200000)
    check("DARE keep rate ~ density (0.6)", abs(big.mean() - 0.6) < 0.005,
          "(%.4f)" % big.mean())
    check("DARE masks differ across adapters/modules",
          not np.array_equal(dare_mask(11, 1, "q", 0, 0.5, 64),
                             dare_mask(11, 1, "q", 1, 0.5, 64)) and
          not np.array_equal(dare_mask(11, 1, "q", 0, 0.5, 64),
                             dare_mask(11, 1, "k", 0, 0.5, 64)))

    # trim: ties at the cut by increasing index
    t = torch.tensor([[1.0, -3.0, 2.0, -2.0], [2.0, 0.5, -2.0, 3.0]])
    got = trim(t, 0.5)  # k = 4: |3| x2, then the first two |2|s (idx 2, 3)
    want = torch.tensor([[0.0, -3.0, 2.0, -2.0], [0.0, 0.0, 0.0, 3.0]])
    check("trim keeps equal magnitudes by increasing index", torch.equal(got, want))
    check("trim k = floor(d * numel)", int((trim(t, 0.49) != 0).sum()) == 3)
    # elect / disjoint mean on a hand example
    t0 = torch.tensor([2.0, -1.0, 0.0, 1.0])
    t1 = torch.tensor([-1.0, -1.0, 0.0, -1.0])
    cm = elect_mean([t0, t1], [1.0, 1.0], "count", 1.0)
    # sums: 1 -> +, -2 -> -, 0 -> + (nobody agrees: 0), 0 -> + (t0 agrees)
    check("elect/disjoint mean (count) by hand",
          torch.equal(cm, torch.tensor([2.0, -1.0, 0.0, 1.0])))
    wm = elect_mean([2 * t0, 0.5 * t1], [2.0, 0.5], "weight", 1.0)
    # sums: 3.5 +, -2.5 -, 0 +, 1.5 +: elementwise / agreeing weights
    check("elect/disjoint mean (weight) by hand",
          torch.allclose(wm, torch.tensor([4.0 / 2, -2.5 / 2.5, 0.0, 2.0 / 2])))

    with tempfile.TemporaryDirectory() as tmp:
        cfg, loras = make_inputs(tmp)
        cases = {c["name"]: c for c in make_cases(cfg)}
        D = {name: case_deltas(c, loras, cfg) for name, c in cases.items()}

        check("concat == linear", maxdiff(D["concat"], D["linear"]) == 0)
        check("dare_linear density 1 == linear",
              maxdiff(D["dare_linear_d1"], D["linear"]) < 1e-14)
        lin3 = case_deltas(case("x", "linear", [0, 1, 2], [0.7, -0.4, 1.2]), loras, cfg)
        check("linear == sum_i w_i s_i B_i A_i (by hand, layer 0 q)",
              float((lin3[(0, "q")][0] - sum(
                  w * lo.scale * lo.B[(0, "q")] @ lo.A[(0, "q")]
                  for w, lo in zip([0.7, -0.4, 1.2], loras))).abs().max()) < 1e-14)
        check("module (1, down) omitted when no adapter adapts it",
              (1, "down") not in D["ties_weight_l07"] and (1, "down") in D["linear"])
        for i, w in ((0, 0.8), (1, -1.3)):
            one = case_deltas(case("x", "ties", [i], [w], density=1.0), loras, cfg)
            ref = case_deltas(case("x", "linear", [i], [w]), loras, cfg)
            check("ties density 1, one adapter (%d, w=%g) == w tau" % (i, w),
                  maxdiff(one, ref) == 0)
            onew = case_deltas(case("x", "ties", [i], [w], density=1.0,
                                    ties_mean="weight"), loras, cfg)
            ref1 = case_deltas(case("x", "linear", [i], [1.0]), loras, cfg)
            check("ties 'weight' mean, one adapter (%d) == tau" % i,
                  maxdiff(onew, ref1) < 1e-15)
            dt = case_deltas(case("x", "dare_ties", [i], [w], density=1.0, seed=5),
                             loras, cfg)
            check("dare_ties density 1, one adapter (%d) == ties" % i,
                  maxdiff(dt, one) == 0)
        t2 = case_deltas(case("x", "ties", [0, 1, 2], [1.0, 0.8, 1.2], density=0.3,
                              lam=2.0), loras, cfg)
        t1 = case_deltas(case("x", "ties", [0, 1, 2], [1.0, 0.8, 1.2], density=0.3),
                         loras, cfg)
        check("ties lambda scales the result",
              max(float((t2[k][0] - 2 * t1[k][0]).abs().max()) for k in t1) < 1e-15)
        check("ties_svd before truncation == ties (count)",
              maxdiff({k: (v[1],) for k, v in D["ties_svd"].items()}, t1) == 0)
        check("dare_linear_svd before truncation == dare_linear",
              maxdiff({k: (v[1],) for k, v in D["dare_linear_svd"].items()},
                      D["dare_linear"]) == 0)
        nz = [float((D["ties_count"][k][0] != 0).double().mean()) for k in D["ties_count"]]
        check("ties keeps a small fraction (<= 0.3 * 3 per element)",
              max(nz) <= 0.9 and min(nz) > 0.1, "(%.2f..%.2f)" % (min(nz), max(nz)))
        for c0 in (0.0, 1.0):
            # t = 0 -> tau_0, t = 1 -> tau_1 (zero where lora1 is absent)
            e = case_deltas(case("x", "slerp", [0, 1], t=c0), loras, cfg)
            diff = max(float((e[k][0] - loras[int(c0)].tau(cfg, *k)).abs().max())
                       for k in e)
            check("slerp t=%g == tau_%d" % (c0, int(c0)), diff < 1e-12)
        # slerp keeps the norm between the end points' norms for orthogonal-ish
        # inputs and is not the linear interpolation where both are present
        sl, k2 = D["slerp"], (0, "q")
        lin = 0.7 * loras[0].tau(cfg, *k2) + 0.3 * loras[1].tau(cfg, *k2)
        check("slerp differs from lerp where both adapt",
              float((sl[k2][0] - lin).abs().max()) > 1e-3)
        k3 = (1, "q")  # lora1 absent: linear interpolation (1 - t) tau_0
        check("slerp with a zero task vector == (1 - t) tau_0",
              float((sl[k3][0] - 0.7 * loras[0].tau(cfg, *k3)).abs().max()) < 1e-15)
        full = case_deltas(case("x", "svd", [0, 1], [1.0, 0.5], svd_rank=6), loras, cfg)
        lin01 = case_deltas(case("x", "linear", [0, 1], [1.0, 0.5]), loras, cfg)
        check("svd at rank >= rank(sum) == linear",
              max(float((full[k][0] - lin01[k][0]).abs().max()) for k in full) < 1e-12)
        for name in ("svd", "ties_svd", "dare_linear_svd"):
            # the rank-R product is unique when S_R > S_R+1, or when the
            # matrix has rank < R (S_R = S_R+1 = 0: nothing is truncated);
            # rounding moves it by ~1e-16 |M| / gap, far below the test's 1e-6
            # as long as the relative gap is >> 1e-10
            R, gaps, terr = cases[name]["svd_rank"], [], 0.0
            for k, (low, dw) in D[name].items():
                S = torch.linalg.svdvals(dw)
                terr = max(terr, abs(float(torch.linalg.norm(dw - low)) -
                                     float(S[R:].norm())) / float(S[0]))
                if float(S[R - 1]) > 1e-12 * float(S[0]):
                    gaps.append(float((S[R - 1] - S[R]) / S[0]))
            check("%s: truncation error == tail singular values" % name, terr < 1e-12)
            check("%s: gap at the cut big enough for a unique product" % name,
                  min(gaps) > 1e-5, "(%d truncated modules, min relative gap %.3g)"
                  % (len(gaps), min(gaps)))
        hub1 = case_deltas(case("x", "lorahub", [0], [1.0]), loras, cfg)
        check("lorahub, one adapter weight 1 == tau",
              maxdiff(hub1, case_deltas(case("x", "linear", [0]), loras, cfg)) < 1e-15)
        hub = D["lorahub"]
        kd = (1, "down")  # lora2 lacks down: A = 0.6 A0, B = 0.6 B0
        check("lorahub with a missing adapter == w^2 tau",
              float((hub[kd][0] - 0.36 * loras[0].tau(cfg, *kd)).abs().max()) < 1e-15)
        check("lorahub has cross terms (!= linear)",
              float((hub[(0, "q")][0] - case_deltas(
                  case("x", "linear", [0, 2], [0.6, -0.4]), loras, cfg)[(0, "q")][0]
              ).abs().max()) > 1e-3)
        ones = case("x", "learned", [0, 1, 2], [1.0] * 3)
        ones["coef"] = [[1.0] * (cfg.L * 7)] * 3
        check("learned with coefficients 1 == linear (weights 1)",
              maxdiff(case_deltas(ones, loras, cfg),
                      case_deltas(case("x", "linear", [0, 1, 2]), loras, cfg)) < 1e-15)
        dl = D["dare_linear"][(0, "gate")][0]
        check("dare_linear != linear (density 0.5)",
              float((dl - D["linear"][(0, "gate")][0]).abs().max()) > 1e-3)
        for name, c in cases.items():
            mx = max(float(v[0].abs().max()) for v in D[name].values())
            check("%s: finite and non-trivial" % name,
                  math.isfinite(mx) and mx > 1e-3, "(max %.3f)" % mx)
    if fails:
        sys.exit("merge_ref self-check: %d FAILED: %s" % (len(fails), ", ".join(fails)))
    print("merge_ref self-check: all passed", file=sys.stderr)


def main():
    torch.set_num_threads(1)
    args = sys.argv[1:]
    if args == ["--self-check"]:
        self_check()
    elif len(args) == 1 and not args[0].startswith("-"):
        write_all(args[0])
    else:
        sys.exit("usage: merge_ref.py OUTDIR | --self-check")


if __name__ == "__main__":
    main()
