#!/usr/bin/python3
"""torch_ref.py: an independent float64 PyTorch reference for the C model.

Run it with Debian's torch (1.13): `/usr/bin/python3 scripts/torch_ref.py ...`.
It needs only torch and numpy: safetensors files are written and read by
hand (struct + json) and the model is written here from the architecture
definition (GUIDE.md section 2, kernels/model.h), not taken from a library.

Two commands
============

1. cases OUTDIR
---------------
    /usr/bin/python3 scripts/torch_ref.py cases OUTDIR [--only NAME ...]

Writes tiny random test cases, one directory per case, OUTDIR/<case>/:

  model/config.json   Hugging Face keys: architectures, model_type
                      ("llama" | "qwen2" | "mistral"), hidden_size,
                      num_hidden_layers, num_attention_heads,
                      num_key_value_heads, head_dim (only when explicit),
                      intermediate_size, vocab_size, max_position_embeddings,
                      rms_norm_eps, rope_theta, rope_scaling (only when used:
                      {"rope_type": "llama3", "factor", "low_freq_factor",
                      "high_freq_factor", "original_max_position_embeddings"}),
                      tie_word_embeddings, attention_bias (llama/mistral:
                      false; absent for qwen2, whose q/k/v biases are implied
                      by the model type), bos_token_id, eos_token_id,
                      hidden_act, torch_dtype.
  model/model.safetensors, or sharded model/model-0000{1,2}-of-00002.safetensors
                      + model/model.safetensors.index.json
                      ({"metadata": {"total_size": N}, "weight_map": {name: file}})
                      HF tensor names:
                        model.embed_tokens.weight                  (V, D)
                        model.layers.{i}.input_layernorm.weight    (D)
                        model.layers.{i}.self_attn.q_proj.weight   (H*hd, D)
                        model.layers.{i}.self_attn.k_proj.weight   (Hkv*hd, D)
                        model.layers.{i}.self_attn.v_proj.weight   (Hkv*hd, D)
                        model.layers.{i}.self_attn.o_proj.weight   (D, H*hd)
                        model.layers.{i}.self_attn.{q,k,v}_proj.bias  (qwen2)
                        model.layers.{i}.post_attention_layernorm.weight (D)
                        model.layers.{i}.mlp.gate_proj.weight      (F, D)
                        model.layers.{i}.mlp.up_proj.weight        (F, D)
                        model.layers.{i}.mlp.down_proj.weight      (D, F)
                        model.norm.weight                          (D)
                        lm_head.weight                             (V, D), absent when tied
                      stored as F32, BF16 or F16 (per case). The reference is
                      computed from the tensors READ BACK from these files, so
                      it uses exactly the rounded values the C code sees.
  loraN/adapter_config.json
                      {"peft_type": "LORA", "r", "lora_alpha", "use_rslora",
                       "target_modules": ["q_proj", ...],
                       "layers_to_transform": [..] | null, "bias": "none",
                       "lora_dropout": 0.0, "task_type": "CAUSAL_LM"}
  loraN/adapter_model.safetensors  (F32), PEFT names
                      base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight (r, in)
                      base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight (out, r)
                      (mlp modules: ...layers.{i}.mlp.gate_proj.lora_A.weight).
                      B is non-zero so every gradient is non-trivial.
  loraN/coef.safetensors  (F32, only for a LoRA whose spec has coef=True)
                      one tensor "coef" (L, 7): the learned-merge coefficient
                      c[l, m] per (layer, module), module order q,k,v,o,
                      gate,up,down (kernels/model.h lora.coef); the LoRA term
                      of an adapted module is multiplied by it. Drawn from a
                      separate generator so the other random draws (and the
                      other cases) are unchanged.
  calibN.safetensors  (F32) Learnable Calibration:
                      bias:    calib.<m>.bias  (out)      or (L, out) per layer
                      lowrank: calib.<m>.P1    (k, in)    or (L, k, in)
                               calib.<m>.P2    (out, k)   or (L, out, k)
                      with <m> in q,k,v,o,gate,up,down, and __metadata__
                      {"format": "lcmt-calib", "kind": "bias"|"lowrank",
                       "rank": "k" ("0" for bias), "per_layer": "0"|"1",
                       "modules": "q,k,v,o,gate,up,down" (those present)}.
  case.json           {"B", "T", "loras": [{"path": "lora0", "weight": 0.7}, ...],
                       "calibs": ["calib0.safetensors", ...], "full_grad": bool}
  ref.safetensors     expected results, F64 (tokens/targets I32):
                        tokens (B,T), targets (B,T) (-1 = no loss there: the
                        first positions of each row are a "prompt", plus some
                        padding), logits (B,T,V), loss [1],
                        grad.input_embeddings (B,T,D)  dloss/d(embedding output),
                        grad.lora{N}.<PEFT name>   every tensor of every LoRA,
                        grad.lora{N}.coef          (L, 7) for a LoRA with coef
                                                   (0 where not adapted),
                        grad.calib{N}.<calib name> every calibration tensor,
                        grad.model.<HF name>       every base tensor, only when
                                                   full_grad (tied: the embedding
                                                   gradient includes the classifier's).

Maths (mirrors kernels/model.h). Every linear module m (q,k,v,o,gate,up,down):
    y = W x + b + sum_i c_i,l,m w_i s_i B_i (A_i x) + sum_c [p_c,m  or  P2_c,m (P1_c,m x)]
with s_i = alpha/r (alpha/sqrt(r) with rsLoRA), w_i the merge weight in
case.json, c_i,l,m the LoRA's coefficient (1 without coef.safetensors).
Decoder: h = embed[tokens]; per layer h += o(attn(rms(h))),
h += down(silu(gate(rms(h))) * up(rms(h))); logits = lm_head(rms(h)).
RMSNorm x * rsqrt(mean(x^2) + eps) * w. RoPE in HF rotate_half form (pairs
(i, i + hd/2)), inv_freq_i = 1/theta^(2i/hd), Llama-3 scaling as in HF's
_compute_llama3_parameters, linear scaling = inv_freq/factor. Grouped-query
attention: q head h reads kv head h // (H/Hkv); causal softmax(q k^T/sqrt(hd)).
Loss = mean cross-entropy over positions with target != -1.

Before writing, each case's gradients are verified: torch.autograd.gradcheck
(float64, fast mode: random-projection directional derivatives) over every
LoRA/calibration tensor, the embedding output (and every base tensor when
full_grad), plus central finite differences of individual entries. A
one-line summary per case goes to stderr; a failed check exits non-zero.

2. stories
----------
    /usr/bin/python3 scripts/torch_ref.py stories --checkpoint PATH.bin \
        --tokenizer tok512.bin [--steps 256] --out tokens.json

Loads a llama2.c "legacy" checkpoint: header of 7 int32 (dim, hidden_dim,
n_layers, n_heads, n_kv_heads, vocab_size (negative = untied classifier),
seq_len), then float32: token_embedding (V,D), rms_att (L,D), wq (L,D,D),
wk (L,kvdim,D), wv (L,kvdim,D), wo (L,D,D), rms_ffn (L,D), w1 (L,F,D),
w2 (L,D,F), w3 (L,F,D), rms_final (D), freq_cis_real (seq,hd/2),
freq_cis_imag (seq,hd/2), then wcls (V,D) when untied. Runs the model as
llama2.c's run.c does, in float64 with a KV cache: RoPE rotates INTERLEAVED
pairs (2i, 2i+1) of each head with freq 1/10000^(2i/hd); w1 = gate, w3 = up,
w2 = down; RMSNorm eps 1e-5. Greedy decoding from BOS (1) at positions
0..steps-1 (steps capped at seq_len), stopping like run.c when BOS is
produced (that BOS is not recorded). Writes JSON:
    {"tokens": [1, generated...], "text": "...", "stopped_at_bos": bool,
     "steps": n, "min_top2_margin": m, "min_top2_margin_pos": pos}
text = the pieces of the generated tokens decoded as run.c's decode() does
(leading space stripped after BOS, <0xNN> -> byte), bytes joined and decoded
as UTF-8 (errors replaced). min_top2_margin is the smallest gap between the
best and second-best logit over the decoded steps (at position
min_top2_margin_pos): a float32 implementation can only leave the greedy
path where that gap is tiny. As a cross-check of the HF-form model used by
`cases`, the checkpoint is also converted to HF layout (q/k rows permuted
from interleaved to rotate_half pairs, as transformers' conversion script
does) and run through that model over the whole sequence; its logits must
match every decoding step's to 1e-9.
Tokenizer file: int32 max_token_length, then per token: float32 score,
int32 length, bytes.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
DT = torch.float64

# ---------------------------------------------------------------------------
# safetensors, by hand
# ---------------------------------------------------------------------------

# safetensors dtype -> numpy dtype of the stored bytes
ST_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; converted below
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}


def to_stored(arr, dtype):
    """numpy array -> contiguous little-endian array of the stored dtype.
    Rounding (BF16, F16) is round-to-nearest-even, as in torch and the C."""
    if dtype == "BF16":
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        r = t.to(torch.bfloat16).to(torch.float32).numpy()  # rounded, low bits 0
        return (r.view(np.uint32) >> 16).astype("<u2")
    return np.ascontiguousarray(arr).astype(ST_DTYPES[dtype])


def from_stored(raw, dtype, shape):
    """bytes of one tensor -> float64 (or int) numpy array."""
    a = np.frombuffer(raw, dtype=ST_DTYPES[dtype])
    if dtype == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    if dtype in ("I32", "I64"):
        return a.reshape(shape).copy()
    return a.astype(np.float64).reshape(shape)


def st_write(path, tensors, metadata=None):
    """tensors: list of (name, numpy array, stored dtype). Writes a
    safetensors file: u64 header length, JSON header (padded with spaces to a
    multiple of 8), then the tensor bytes in list order."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, arr, dtype in tensors:
        b = to_stored(arr, dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return off  # bytes of tensor data


def st_read(path):
    """-> (dict name -> numpy array (float64 for float dtypes), metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        out[name] = from_stored(data[base + a:base + b], info["dtype"],
                                info["shape"])
    return out, meta


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------
# architecture description
# ---------------------------------------------------------------------------

# (short name, HF path inside a layer) in C's module_kind order
MODULES = [("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"),
           ("v", "self_attn.v_proj"), ("o", "self_attn.o_proj"),
           ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"),
           ("down", "mlp.down_proj")]
MOD_PATH = dict(MODULES)
MOD_NAMES = [m for m, _ in MODULES]


class Config:
    """The model hyper-parameters, read from / written to HF config.json."""

    def __init__(self, arch, D, L, H, Hkv, F, V, head_dim=None, eps=1e-5,
                 theta=10000.0, rope_scaling=None, tied=False, max_pos=128):
        self.arch, self.D, self.L, self.H, self.Hkv = arch, D, L, H, Hkv
        self.F, self.V, self.eps, self.theta = F, V, eps, theta
        self.explicit_hd = head_dim is not None
        self.hd = head_dim if head_dim is not None else D // H
        self.rope_scaling, self.tied, self.max_pos = rope_scaling, tied, max_pos
        self.qkv_bias = arch == "qwen2"

    def dims(self, m):
        """(out, in) of linear module m."""
        D, F, q, kv = self.D, self.F, self.H * self.hd, self.Hkv * self.hd
        return {"q": (q, D), "k": (kv, D), "v": (kv, D), "o": (D, q),
                "gate": (F, D), "up": (F, D), "down": (D, F)}[m]

    def to_hf(self, dtype):
        arch_cls = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                    "mistral": "MistralForCausalLM"}[self.arch]
        c = {"architectures": [arch_cls], "model_type": self.arch,
             "hidden_size": self.D, "num_hidden_layers": self.L,
             "num_attention_heads": self.H, "num_key_value_heads": self.Hkv}
        if self.explicit_hd:
            c["head_dim"] = self.hd
        c.update({"intermediate_size": self.F, "vocab_size": self.V,
                  "max_position_embeddings": self.max_pos,
                  "rms_norm_eps": self.eps, "rope_theta": self.theta})
        if self.rope_scaling:
            c["rope_scaling"] = dict(self.rope_scaling)
        c["tie_word_embeddings"] = self.tied
        if self.arch != "qwen2":
            c["attention_bias"] = False
        c.update({"hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
                  "torch_dtype": {"F32": "float32", "BF16": "bfloat16",
                                  "F16": "float16"}[dtype]})
        return c

    @staticmethod
    def from_hf(c):
        hd = c.get("head_dim")
        cfg = Config(c["model_type"], c["hidden_size"], c["num_hidden_layers"],
                     c["num_attention_heads"],
                     c.get("num_key_value_heads", c["num_attention_heads"]),
                     c["intermediate_size"], c["vocab_size"], head_dim=hd,
                     eps=c["rms_norm_eps"], theta=c.get("rope_theta", 10000.0),
                     rope_scaling=c.get("rope_scaling"),
                     tied=c.get("tie_word_embeddings", False),
                     max_pos=c["max_position_embeddings"])
        cfg.qkv_bias = c["model_type"] == "qwen2" or c.get("attention_bias", False)
        return cfg


def hf_names(cfg):
    """HF tensor names and shapes of the base model, in file order."""
    D, V = cfg.D, cfg.V
    out = [("model.embed_tokens.weight", (V, D))]
    for i in range(cfg.L):
        p = "model.layers.%d." % i
        out.append((p + "input_layernorm.weight", (D,)))
        for m in ("q", "k", "v", "o"):
            out.append((p + MOD_PATH[m] + ".weight", cfg.dims(m)))
            if cfg.qkv_bias and m != "o":
                out.append((p + MOD_PATH[m] + ".bias", (cfg.dims(m)[0],)))
        out.append((p + "post_attention_layernorm.weight", (D,)))
        for m in ("gate", "up", "down"):
            out.append((p + MOD_PATH[m] + ".weight", cfg.dims(m)))
    out.append(("model.norm.weight", (D,)))
    if not cfg.tied:
        out.append(("lm_head.weight", (V, D)))
    return out


def lora_name(layer, m, ab):
    return "base_model.model.model.layers.%d.%s.lora_%s.weight" % (
        layer, MOD_PATH[m], ab)


# ---------------------------------------------------------------------------
# the model, float64
# ---------------------------------------------------------------------------

def rope_inv_freq(cfg):
    """(hd/2) inverse frequencies with HF's rope scaling applied."""
    hd = cfg.hd
    inv = 1.0 / (cfg.theta ** (torch.arange(0, hd, 2, dtype=DT) / hd))
    rs = cfg.rope_scaling
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv / rs["factor"]
    if kind != "llama3":
        raise ValueError("unsupported rope_scaling %r" % rs)
    # transformers' _compute_llama3_parameters, line for line
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wl, high_wl = old / low, old / high
    wavelen = 2 * math.pi / inv
    inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    is_med = ~(wavelen < high_wl) * ~(wavelen > low_wl)
    return torch.where(is_med, smoothed, inv_l)


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Adapters:
    """LoRAs and calibrations active in one pass, as float64 tensors.
    loras: list of dicts {scale, weight, A: {(l, m): (r,in)}, B: {...},
                          coef: None or {"coef": (L, 7)}}
    calibs: list of dicts {kind, per_layer, modules, t: {name: tensor}}"""

    def __init__(self, loras, calibs):
        self.loras, self.calibs = loras, calibs

    def apply(self, x, y, layer, m):
        """Adds the LoRA and calibration terms of module m in `layer` to y."""
        for lo in self.loras:
            if (layer, m) in lo["A"]:
                A, B = lo["A"][(layer, m)], lo["B"][(layer, m)]
                f = lo["weight"] * lo["scale"]
                if lo.get("coef"):
                    f = f * lo["coef"]["coef"][layer, MOD_NAMES.index(m)]
                y = y + f * ((x @ A.t()) @ B.t())
        for c in self.calibs:
            if m not in c["modules"]:
                continue
            sel = (lambda t: t[layer]) if c["per_layer"] else (lambda t: t)
            if c["kind"] == "bias":
                y = y + sel(c["t"]["calib.%s.bias" % m])
            else:
                P1 = sel(c["t"]["calib.%s.P1" % m])
                P2 = sel(c["t"]["calib.%s.P2" % m])
                y = y + (x @ P1.t()) @ P2.t()
        return y


def linear(x, W, b, ad, layer, m):
    y = x @ W.t()
    if b is not None:
        y = y + b
    return ad.apply(x, y, layer, m)


def forward_from_emb(cfg, W, ad, h):
    """h (B,T,D) embedding output -> logits (B,T,V)."""
    B, T, _ = h.shape
    H, Hkv, hd = cfg.H, cfg.Hkv, cfg.hd
    inv = rope_inv_freq(cfg)
    freqs = torch.arange(T, dtype=DT)[:, None] * inv[None, :]  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # (T, hd)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    group = H // Hkv
    for l in range(cfg.L):
        p = "model.layers.%d." % l
        x = rms_norm(h, W[p + "input_layernorm.weight"], cfg.eps)
        qkv = {}
        for m in ("q", "k", "v"):
            qkv[m] = linear(x, W[p + MOD_PATH[m] + ".weight"],
                            W.get(p + MOD_PATH[m] + ".bias"), ad, l, m)
        q = qkv["q"].view(B, T, H, hd).transpose(1, 2)    # (B,H,T,hd)
        k = qkv["k"].view(B, T, Hkv, hd).transpose(1, 2)  # (B,Hkv,T,hd)
        v = qkv["v"].view(B, T, Hkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # q head h reads kv head h // group
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
        h = h + linear(o, W[p + "self_attn.o_proj.weight"], None, ad, l, "o")
        x = rms_norm(h, W[p + "post_attention_layernorm.weight"], cfg.eps)
        g = linear(x, W[p + "mlp.gate_proj.weight"], None, ad, l, "gate")
        u = linear(x, W[p + "mlp.up_proj.weight"], None, ad, l, "up")
        h = h + linear(torch.nn.functional.silu(g) * u,
                       W[p + "mlp.down_proj.weight"], None, ad, l, "down")
    h = rms_norm(h, W["model.norm.weight"], cfg.eps)
    head = W["model.embed_tokens.weight"] if cfg.tied else W["lm_head.weight"]
    return h @ head.t()


def loss_fn(logits, targets):
    """Mean cross-entropy over targets != -1 (0 when there are none)."""
    mask = targets != -1
    if not bool(mask.any()):
        return logits.sum() * 0.0
    lp = logits.log_softmax(-1)
    nll = -lp[mask].gather(-1, targets[mask][:, None])[:, 0]
    return nll.mean()


# ---------------------------------------------------------------------------
# test cases
# ---------------------------------------------------------------------------

ALL = MOD_NAMES

CASES = [
    dict(name="llama_gqa", seed=1001, dtype="F32", shards=1,
         cfg=dict(arch="llama", D=48, L=2, H=4, Hkv=2, F=80, V=67),
         loras=[dict(r=4, alpha=8.0, rslora=False, modules=ALL, layers=None, weight=0.7),
                dict(r=3, alpha=6.0, rslora=True, modules=ALL, layers=None, weight=0.4,
                     coef=True)],
         calibs=[dict(kind="bias", per_layer=False, modules=ALL),
                 dict(kind="lowrank", k=2, per_layer=False, modules=ALL)],
         B=2, T=9, full_grad=False),
    dict(name="qwen2_tied", seed=1002, dtype="F32", shards=1,
         cfg=dict(arch="qwen2", D=48, L=3, H=6, Hkv=2, F=64, V=71, eps=1e-6,
                  theta=1e6, tied=True),
         loras=[dict(r=4, alpha=16.0, rslora=False, modules=["q", "v", "down"],
                     layers=[0, 2], weight=1.0, coef=True)],
         calibs=[dict(kind="bias", per_layer=True, modules=ALL),
                 dict(kind="lowrank", k=3, per_layer=True, modules=ALL)],
         B=2, T=8, full_grad=True),
    dict(name="llama3_rope", seed=1003, dtype="BF16", shards=2,
         cfg=dict(arch="llama", D=32, L=2, H=4, Hkv=2, F=48, V=53, head_dim=16,
                  theta=500000.0,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 64}),
         loras=[dict(r=4, alpha=16.0, rslora=False, modules=["o", "gate", "up"],
                     layers=None, weight=1.0),
                dict(r=2, alpha=4.0, rslora=True, modules=["o", "gate", "up"],
                     layers=None, weight=-0.5)],
         calibs=[dict(kind="lowrank", k=4, per_layer=False, modules=ALL)],
         B=2, T=12, full_grad=False),
    dict(name="mistral_f16", seed=1004, dtype="F16", shards=1,
         cfg=dict(arch="mistral", D=32, L=2, H=4, Hkv=1, F=56, V=59),
         loras=[dict(r=2, alpha=4.0, rslora=False, modules=ALL, layers=None,
                     weight=1.0)],
         calibs=[dict(kind="bias", per_layer=False, modules=ALL)],
         B=3, T=16, full_grad=False),
]


def randn(*shape, std=1.0):
    """float32 N(0, std) from torch's global (seeded) generator."""
    return (torch.randn(*shape, dtype=torch.float32) * std).numpy()


def make_base(cfg):
    """Random base weights (float32 numpy), names in file order.
    Norm weights 1 + 0.1 N(0,1); linear weights N(0, 1/sqrt(in)) so each
    projection keeps activations O(1); embedding N(0, 0.3), or N(0,
    1/sqrt(D)) when it is also the classifier (tied) so logits stay O(1);
    q/k/v biases N(0, 0.2)."""
    out = []
    for name, shape in hf_names(cfg):
        if name.endswith("norm.weight") or "layernorm" in name:
            a = 1.0 + randn(*shape, std=0.1)
        elif name == "model.embed_tokens.weight":
            a = randn(*shape, std=1.0 / math.sqrt(cfg.D) if cfg.tied else 0.3)
        elif name.endswith(".bias"):
            a = randn(*shape, std=0.2)
        else:
            a = randn(*shape, std=1.0 / math.sqrt(shape[1]))
        out.append((name, a))
    return out


def write_model(d, cfg, tensors, dtype, shards):
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "config.json"), cfg.to_hf(dtype))
    items = [(n, a, dtype) for n, a in tensors]
    if shards == 1:
        st_write(os.path.join(d, "model.safetensors"), items, {"format": "pt"})
        return
    # split the tensor list into `shards` runs of about equal bytes
    total = sum(a.size for _, a, _ in items)
    groups, cur, acc = [], [], 0
    for it in items:
        cur.append(it)
        acc += it[1].size
        if acc >= total * (len(groups) + 1) / shards and len(groups) < shards - 1:
            groups.append(cur)
            cur = []
    groups.append(cur)
    weight_map, total_size = {}, 0
    for i, g in enumerate(groups):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, shards)
        total_size += st_write(os.path.join(d, fn), g, {"format": "pt"})
        for n, _, _ in g:
            weight_map[n] = fn
    write_json(os.path.join(d, "model.safetensors.index.json"),
               {"metadata": {"total_size": total_size}, "weight_map": weight_map})


def read_model(d):
    """HF folder -> (Config, dict name -> float64 numpy)."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = Config.from_hf(json.load(f))
    idx = os.path.join(d, "model.safetensors.index.json")
    W = {}
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for fn in files:
        W.update(st_read(os.path.join(d, fn))[0])
    return cfg, W


def write_lora(d, cfg, spec):
    """PEFT folder with random A (std 1/sqrt(in)) and non-zero B (std
    0.3/sqrt(r)), F32."""
    os.makedirs(d, exist_ok=True)
    r = spec["r"]
    layers = spec["layers"] if spec["layers"] is not None else range(cfg.L)
    write_json(os.path.join(d, "adapter_config.json"), {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r,
        "lora_alpha": spec["alpha"], "use_rslora": spec["rslora"],
        "target_modules": [m + "_proj" for m in spec["modules"]],
        "layers_to_transform": spec["layers"], "bias": "none",
        "lora_dropout": 0.0})
    items = []
    for l in layers:
        for m in spec["modules"]:
            out, inp = cfg.dims(m)
            items.append((lora_name(l, m, "A"), randn(r, inp, std=1 / math.sqrt(inp)), "F32"))
            items.append((lora_name(l, m, "B"), randn(out, r, std=0.3 / math.sqrt(r)), "F32"))
    st_write(os.path.join(d, "adapter_model.safetensors"), items)


def write_coef(d, cfg, seed):
    """coef.safetensors: (L, 7) coefficients in [-0.5, 1.5) (F32) from a
    generator of their own, so no other random draw moves."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.rand(cfg.L, len(MOD_NAMES), generator=gen, dtype=torch.float32) * 2 - 0.5
    st_write(os.path.join(d, "coef.safetensors"), [("coef", c.numpy(), "F32")])


def write_calib(path, cfg, spec):
    """Calibration safetensors (F32) with non-zero random values."""
    per = spec["per_layer"]
    lead = (cfg.L,) if per else ()
    items = []
    for m in spec["modules"]:
        out, inp = cfg.dims(m)
        if spec["kind"] == "bias":
            items.append(("calib.%s.bias" % m, randn(*lead, out, std=0.1), "F32"))
        else:
            k = spec["k"]
            items.append(("calib.%s.P1" % m, randn(*lead, k, inp, std=1 / math.sqrt(inp)), "F32"))
            items.append(("calib.%s.P2" % m, randn(*lead, out, k, std=0.1 / math.sqrt(k)), "F32"))
    meta = {"format": "lcmt-calib", "kind": spec["kind"],
            "rank": str(spec.get("k", 0)), "per_layer": "1" if per else "0",
            "modules": ",".join(spec["modules"])}
    st_write(path, items, meta)


def read_lora(d, weight, cfg):
    """PEFT folder -> adapter dict with leaf float64 tensors."""
    with open(os.path.join(d, "adapter_config.json")) as f:
        ac = json.load(f)
    t, _ = st_read(os.path.join(d, "adapter_model.safetensors"))
    r = ac["r"]
    scale = ac["lora_alpha"] / (math.sqrt(r) if ac.get("use_rslora") else r)
    lo = {"scale": scale, "weight": weight, "A": {}, "B": {}, "coef": None}
    cp = os.path.join(d, "coef.safetensors")
    if os.path.exists(cp):
        c = st_read(cp)[0]["coef"]
        assert c.shape == (cfg.L, len(MOD_NAMES)), "coef shape in " + cp
        lo["coef"] = {"coef": torch.tensor(c, requires_grad=True)}
    for l in range(cfg.L):
        for m in MOD_NAMES:
            na, nb = lora_name(l, m, "A"), lora_name(l, m, "B")
            if na in t:
                lo["A"][(l, m)] = torch.tensor(t[na], requires_grad=True)
                lo["B"][(l, m)] = torch.tensor(t[nb], requires_grad=True)
    assert 2 * len(lo["A"]) == len(t), "unrecognised LoRA tensors in " + d
    return lo


def read_calib(path):
    t, meta = st_read(path)
    return {"kind": meta["kind"], "per_layer": meta["per_layer"] == "1",
            "modules": meta["modules"].split(","),
            "t": {n: torch.tensor(a, requires_grad=True) for n, a in t.items()}}


def make_tokens(cfg, B, T):
    """Random tokens/targets; targets -1 on a 3-token prompt per row, and
    the last row ends in 2 padding positions."""
    tokens = torch.randint(0, cfg.V, (B, T))
    targets = torch.randint(0, cfg.V, (B, T))
    targets[:, :3] = -1
    targets[-1, -2:] = -1
    return tokens, targets


def run_case(case, outdir):
    t0 = time.time()
    torch.manual_seed(case["seed"])
    d = os.path.join(outdir, case["name"])
    os.makedirs(d, exist_ok=True)
    cfg = Config(**case["cfg"])
    B, T = case["B"], case["T"]

    # ---- write the inputs --------------------------------------------------
    write_model(os.path.join(d, "model"), cfg, make_base(cfg), case["dtype"],
                case["shards"])
    for i, s in enumerate(case["loras"]):
        write_lora(os.path.join(d, "lora%d" % i), cfg, s)
        if s.get("coef"):
            write_coef(os.path.join(d, "lora%d" % i), cfg, case["seed"] * 100 + i)
    for i, s in enumerate(case["calibs"]):
        write_calib(os.path.join(d, "calib%d.safetensors" % i), cfg, s)
    tokens, targets = make_tokens(cfg, B, T)
    write_json(os.path.join(d, "case.json"), {
        "B": B, "T": T,
        "loras": [{"path": "lora%d" % i, "weight": s["weight"]}
                  for i, s in enumerate(case["loras"])],
        "calibs": ["calib%d.safetensors" % i for i in range(len(case["calibs"]))],
        "full_grad": case["full_grad"]})

    # ---- read them back: the reference sees exactly the stored values ------
    cfg, Wnp = read_model(os.path.join(d, "model"))
    W = {n: torch.tensor(a, requires_grad=case["full_grad"]) for n, a in Wnp.items()}
    loras = [read_lora(os.path.join(d, "lora%d" % i), s["weight"], cfg)
             for i, s in enumerate(case["loras"])]
    calibs = [read_calib(os.path.join(d, "calib%d.safetensors" % i))
              for i in range(len(case["calibs"]))]
    ad = Adapters(loras, calibs)

    # ---- forward + backward ------------------------------------------------
    # h0 = embedding output; dloss/dh0 is read off an added zero tensor
    delta = torch.zeros(B, T, cfg.D, requires_grad=True)
    h0 = W["model.embed_tokens.weight"][tokens] + delta
    logits = forward_from_emb(cfg, W, ad, h0)
    loss = loss_fn(logits, targets)
    loss.backward()

    ref = [("tokens", tokens.numpy().astype(np.int32), "I32"),
           ("targets", targets.numpy().astype(np.int32), "I32"),
           ("logits", logits.detach().numpy(), "F64"),
           ("loss", loss.detach().reshape(1).numpy(), "F64"),
           ("grad.input_embeddings", delta.grad.numpy(), "F64")]
    slots = []  # (label, dict, key): tensors whose gradients are verified
    for i, lo in enumerate(loras):
        for l_m in lo["A"]:
            for ab in ("A", "B"):
                n = lora_name(l_m[0], l_m[1], ab)
                ref.append(("grad.lora%d.%s" % (i, n), lo[ab][l_m].grad.numpy(), "F64"))
                slots.append(("lora%d.%s" % (i, n), lo[ab], l_m))
    for i, c in enumerate(calibs):
        for n, t in c["t"].items():
            ref.append(("grad.calib%d.%s" % (i, n), t.grad.numpy(), "F64"))
            slots.append(("calib%d.%s" % (i, n), c["t"], n))
    if case["full_grad"]:
        for n, _ in hf_names(cfg):
            ref.append(("grad.model." + n, W[n].grad.numpy(), "F64"))
            slots.append(("model." + n, W, n))
    for i, lo in enumerate(loras):  # last, so the other slots' probes are unchanged
        if lo["coef"]:
            ref.append(("grad.lora%d.coef" % i, lo["coef"]["coef"].grad.numpy(), "F64"))
            slots.append(("lora%d.coef" % i, lo["coef"], "coef"))

    # ---- verify the gradients ------------------------------------------------
    gc_ok, fd_err = verify(cfg, W, ad, tokens, targets, delta.grad, slots)
    if not gc_ok or fd_err > 1e-5:
        sys.exit("%s: gradient check FAILED (gradcheck %s, finite-difference "
                 "rel err %.2e)" % (case["name"], gc_ok, fd_err))

    st_write(os.path.join(d, "ref.safetensors"), ref)
    n_grad = sum(1 for n, _, _ in ref if n.startswith("grad."))
    print("%-12s %-7s B=%d T=%d V=%-3d loss=%.6f |logits|max=%.2f grads=%d "
          "gradcheck=ok fd_max_rel_err=%.1e (%.2fs)"
          % (case["name"], cfg.arch, B, T, cfg.V, loss.item(),
             logits.abs().max().item(), n_grad, fd_err, time.time() - t0),
          file=sys.stderr)


def verify(cfg, W, ad, tokens, targets, gh0, slots):
    """Checks autograd against numerical derivatives of the loss.
    slots: (label, dict, key) for every tensor whose gradient is checked
    (dict[key] is the leaf tensor, in W, a LoRA's A/B dict or a calib dict).
    The embedding output is probed through an added perturbation delta:
    h = embed[tokens] + delta, dloss/ddelta = dloss/dh (gh0), and the
    embedding matrix keeps both its lookup and (tied) classifier roles.
    1. torch.autograd.gradcheck (float64, fast mode) over every slot and
       delta: random-direction derivatives vs central differences.
    2. Central differences on individual entries: the largest-gradient entry
       and two random entries of every tensor, plus 4 embedding-output entries.
    Returns (gradcheck passed, max relative error of the entry checks)."""

    def loss_at(delta):
        h = W["model.embed_tokens.weight"][tokens] + delta
        return loss_fn(forward_from_emb(cfg, W, ad, h), targets)

    def loss_with(delta, params):
        # evaluate with params[i] standing in for slot i, then restore
        saved = [d[k] for _, d, k in slots]
        for (_, d, k), p in zip(slots, params):
            d[k] = p
        try:
            return loss_at(delta)
        finally:
            for (_, d, k), s in zip(slots, saved):
                d[k] = s

    delta = torch.zeros_like(gh0)
    inputs = [delta.clone().requires_grad_(True)] + \
             [d[k].detach().clone().requires_grad_(True) for _, d, k in slots]
    gc_ok = torch.autograd.gradcheck(lambda h, *ps: loss_with(h, ps), inputs,
                                     eps=1e-6, atol=1e-8, rtol=1e-5,
                                     fast_mode=True, raise_exception=False)

    # entry-wise central differences against the analytic gradients
    gen = torch.Generator().manual_seed(7)
    eps, worst = 1e-5, 0.0
    with torch.no_grad():
        def probe(flat, j, g):
            nonlocal worst
            x0 = flat[j].item()
            flat[j] = x0 + eps
            lp = loss_at(delta).item()
            flat[j] = x0 - eps
            lm = loss_at(delta).item()
            flat[j] = x0
            worst = max(worst, abs((lp - lm) / (2 * eps) - g) / max(abs(g), 1e-3))

        for _, d, k in slots:
            flat, gflat = d[k].data.view(-1), d[k].grad.view(-1)
            picks = [int(gflat.abs().argmax())] + \
                torch.randint(0, flat.numel(), (2,), generator=gen).tolist()
            for j in picks:
                probe(flat, j, gflat[j].item())
        hflat, ghflat = delta.view(-1), gh0.reshape(-1)
        for j in torch.randint(0, hflat.numel(), (4,), generator=gen).tolist():
            probe(hflat, j, ghflat[j].item())
    return gc_ok, worst


def cmd_cases(args):
    names = [c["name"] for c in CASES]
    for o in args.only or []:
        if o not in names:
            sys.exit("unknown case %r (cases: %s)" % (o, ", ".join(names)))
    os.makedirs(args.outdir, exist_ok=True)
    for c in CASES:
        if not args.only or c["name"] in args.only:
            run_case(c, args.outdir)


# ---------------------------------------------------------------------------
# llama2.c checkpoint + greedy decoding (run.c semantics)
# ---------------------------------------------------------------------------

def load_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, L, H, Hkv, V, seq = struct.unpack("<7i", data[:28])
    shared = V > 0
    V = abs(V)
    hd = dim // H
    kv = Hkv * hd
    fl = np.frombuffer(data, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        if pos + n > fl.size:
            raise ValueError("%s: truncated checkpoint" % path)
        a = torch.tensor(fl[pos:pos + n].astype(np.float64)).reshape(shape)
        pos += n
        return a

    w = {"tok": take(V, dim), "rms_att": take(L, dim), "wq": take(L, dim, dim),
         "wk": take(L, kv, dim), "wv": take(L, kv, dim), "wo": take(L, dim, dim),
         "rms_ffn": take(L, dim), "w1": take(L, hidden, dim),
         "w2": take(L, dim, hidden), "w3": take(L, hidden, dim),
         "rms_final": take(dim)}
    take(seq, hd // 2)  # freq_cis_real (unused)
    take(seq, hd // 2)  # freq_cis_imag (unused)
    w["wcls"] = w["tok"] if shared else take(V, dim)
    c = dict(dim=dim, hidden=hidden, L=L, H=H, Hkv=Hkv, V=V, seq=seq, hd=hd)
    return c, w


def load_l2c_tokenizer(path, V):
    with open(path, "rb") as f:
        data = f.read()
    (max_len,) = struct.unpack("<i", data[:4])
    off, vocab = 4, []
    for _ in range(V):
        _score, n = struct.unpack("<fi", data[off:off + 8])
        vocab.append(data[off + 8:off + 8 + n])
        off += 8 + n
    return vocab


def l2c_decode(vocab, prev, tok):
    """run.c's decode(): bytes of `tok` after `prev`."""
    piece = vocab[tok]
    if prev == 1 and piece.startswith(b" "):
        piece = piece[1:]
    if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece


def l2c_step(c, w, cache, token, pos):
    """One position of run.c's forward(), float64, KV cache in `cache`."""
    H, Hkv, hd = c["H"], c["Hkv"], c["hd"]
    x = w["tok"][token].clone()

    def rms(v, g):
        return g * (v / torch.sqrt((v * v).mean() + 1e-5))

    # interleaved RoPE: pair (2i, 2i+1) of each head at freq 1/10000^(2i/hd)
    freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=DT) / hd))
    ang = pos * freq
    cr, ci = ang.cos(), ang.sin()

    def rope(v, nh):
        v = v.view(nh, hd // 2, 2)
        v0, v1 = v[..., 0], v[..., 1]
        return torch.stack((v0 * cr - v1 * ci, v0 * ci + v1 * cr), -1).reshape(-1)

    for l in range(c["L"]):
        xb = rms(x, w["rms_att"][l])
        q = rope(w["wq"][l] @ xb, H)
        k = rope(w["wk"][l] @ xb, Hkv)
        v = w["wv"][l] @ xb
        cache[l][0][pos], cache[l][1][pos] = k.view(Hkv, hd), v.view(Hkv, hd)
        K = cache[l][0][:pos + 1]  # (pos+1, Hkv, hd)
        Vv = cache[l][1][:pos + 1]
        q = q.view(H, hd)
        kvh = torch.arange(H) // (H // Hkv)
        att = torch.einsum("hd,thd->ht", q, K[:, kvh]) / math.sqrt(hd)
        att = att.softmax(-1)
        o = torch.einsum("ht,thd->hd", att, Vv[:, kvh]).reshape(-1)
        x = x + w["wo"][l] @ o
        xb = rms(x, w["rms_ffn"][l])
        hb = torch.nn.functional.silu(w["w1"][l] @ xb) * (w["w3"][l] @ xb)
        x = x + w["w2"][l] @ hb
    x = rms(x, w["rms_final"])
    return w["wcls"] @ x


def llama2c_to_hf(c, w):
    """llama2.c weights -> (Config, HF-named dict) for forward_from_emb.
    q/k rows are permuted from interleaved RoPE pairs to HF's rotate_half
    layout exactly as transformers' convert_llama_weights_to_hf does."""
    def permute(t, nh):
        return t.view(nh, t.shape[0] // nh // 2, 2, t.shape[1]).transpose(1, 2) \
                .reshape(t.shape)
    cfg = Config("llama", c["dim"], c["L"], c["H"], c["Hkv"], c["hidden"],
                 c["V"], tied=False, max_pos=c["seq"])
    W = {"model.embed_tokens.weight": w["tok"], "model.norm.weight": w["rms_final"],
         "lm_head.weight": w["wcls"]}
    for l in range(c["L"]):
        p = "model.layers.%d." % l
        W[p + "input_layernorm.weight"] = w["rms_att"][l]
        W[p + "post_attention_layernorm.weight"] = w["rms_ffn"][l]
        W[p + "self_attn.q_proj.weight"] = permute(w["wq"][l], c["H"])
        W[p + "self_attn.k_proj.weight"] = permute(w["wk"][l], c["Hkv"])
        W[p + "self_attn.v_proj.weight"] = w["wv"][l]
        W[p + "self_attn.o_proj.weight"] = w["wo"][l]
        W[p + "mlp.gate_proj.weight"] = w["w1"][l]
        W[p + "mlp.up_proj.weight"] = w["w3"][l]
        W[p + "mlp.down_proj.weight"] = w["w2"][l]
    return cfg, W


def cmd_stories(args):
    t0 = time.time()
    c, w = load_llama2c(args.checkpoint)
    vocab = load_l2c_tokenizer(args.tokenizer, c["V"])
    steps = min(args.steps, c["seq"]) if args.steps > 0 else c["seq"]
    cache = [(torch.zeros(c["seq"], c["Hkv"], c["hd"]),
              torch.zeros(c["seq"], c["Hkv"], c["hd"])) for _ in range(c["L"])]
    tokens, text, token, stopped = [1], b"", 1, False
    margin, margin_pos, all_logits = float("inf"), -1, []
    with torch.no_grad():
        for pos in range(steps):
            logits = l2c_step(c, w, cache, token, pos)
            all_logits.append(logits)
            top2 = logits.topk(2).values
            if (top2[0] - top2[1]).item() < margin:
                margin, margin_pos = (top2[0] - top2[1]).item(), pos
            nxt = int(logits.argmax())  # lowest index on ties, like run.c
            if nxt == 1:  # run.c: BOS delimits sequences; stop
                stopped = True
                break
            text += l2c_decode(vocab, token, nxt)
            tokens.append(nxt)
            token = nxt

        # cross-check: the HF-form model used for the test cases, given the
        # converted weights, must reproduce every decoding step's logits
        hcfg, hW = llama2c_to_hf(c, w)
        ids = torch.tensor(tokens[:len(all_logits)])[None]
        full = forward_from_emb(hcfg, hW, Adapters([], []),
                                hW["model.embed_tokens.weight"][ids])[0]
        dev = (full - torch.stack(all_logits)).abs().max().item()
        if dev > 1e-9:
            sys.exit("stories: HF-form forward disagrees with the run.c-form "
                     "decoder by %.3g" % dev)

    out = {"tokens": tokens, "text": text.decode("utf-8", errors="replace"),
           "stopped_at_bos": stopped, "steps": steps,
           "min_top2_margin": margin, "min_top2_margin_pos": margin_pos}
    write_json(args.out, out)
    print("stories: %d tokens, stopped_at_bos=%s, min top-2 margin %.3g at "
          "pos %d, HF-form vs run.c-form max |dlogit| %.1e (%.2fs): %s"
          % (len(tokens), stopped, margin, margin_pos, dev, time.time() - t0,
             out["text"][:60].replace("\n", " ")), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("cases", help="write the random test cases")
    a.add_argument("outdir")
    a.add_argument("--only", nargs="*", help="case names to write")
    b = sub.add_parser("stories", help="greedy decoding of a llama2.c checkpoint")
    b.add_argument("--checkpoint", required=True)
    b.add_argument("--tokenizer", required=True)
    b.add_argument("--steps", type=int, default=256)
    b.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    {"cases": cmd_cases, "stories": cmd_stories}[args.cmd](args)


if __name__ == "__main__":
    main()
