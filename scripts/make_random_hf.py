#!/usr/bin/python3
"""A Hugging Face model folder with random weights at a real model's shape.

    make_random_hf.py --config CONFIG.json --tokenizer DIR --out DIR
                      [--dtype bf16|f16|f32] [--shards N] [--reduce] [--seed S]

CONFIG.json is a real config.json (../shared/assets/hf-configs/*); DIR of
--tokenizer holds a tokenizer.json (and tokenizer_config.json, copied when
present). The output is config.json, the tokenizer files and the weights as
safetensors, in N shards with model.safetensors.index.json when N > 1, as the
Hub stores large models. Weights are N(0, 0.02) (norms 1, biases 0): a
measurement base for memory and speed, not a language model.

--reduce keeps the vocabulary, the tokenizer, the architecture and the
head dimension, and shrinks the rest (2 layers, hidden 256, intermediate 512,
the query/key-value head ratio kept): the shape CI runs the pipeline at.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

DT = {"bf16": "BF16", "f16": "F16", "f32": "F32"}


def tensors(cfg):
    """(name, shape, init) in the Hub's order; init is 'normal', 'one' or 'zero'."""
    h, ff, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim", h // nh)
    V = cfg["vocab_size"]
    qwen2 = cfg.get("model_type") == "qwen2"
    out = [("model.embed_tokens.weight", (V, h), "normal")]
    for i in range(L):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (h,), "one"),
                (p + "self_attn.q_proj.weight", (nh * hd, h), "normal"),
                (p + "self_attn.k_proj.weight", (nkv * hd, h), "normal"),
                (p + "self_attn.v_proj.weight", (nkv * hd, h), "normal")]
        if qwen2:
            out += [(p + "self_attn.q_proj.bias", (nh * hd,), "zero"),
                    (p + "self_attn.k_proj.bias", (nkv * hd,), "zero"),
                    (p + "self_attn.v_proj.bias", (nkv * hd,), "zero")]
        out += [(p + "self_attn.o_proj.weight", (h, nh * hd), "normal"),
                (p + "post_attention_layernorm.weight", (h,), "one"),
                (p + "mlp.gate_proj.weight", (ff, h), "normal"),
                (p + "mlp.up_proj.weight", (ff, h), "normal"),
                (p + "mlp.down_proj.weight", (h, ff), "normal")]
    out.append(("model.norm.weight", (h,), "one"))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (V, h), "normal"))
    return out


def encode(a, dtype):
    """float32 array -> bytes of dtype (bf16 rounded to nearest even)."""
    if dtype == "f32":
        return a.astype("<f4").tobytes()
    if dtype == "f16":
        return a.astype("<f2").tobytes()
    u = a.astype("<f4").view("<u4")
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def reduce_config(cfg):
    c = dict(cfg)
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim", cfg["hidden_size"] // nh)
    ratio = nh // nkv
    kv = 1 if ratio >= 4 else 2
    c["num_key_value_heads"] = kv
    c["num_attention_heads"] = kv * ratio
    c["head_dim"] = hd
    c["hidden_size"] = 256
    c["intermediate_size"] = 512
    c["num_hidden_layers"] = 2
    c["max_position_embeddings"] = min(cfg.get("max_position_embeddings", 2048), 4096)
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--config", required=True)
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bf16", choices=sorted(DT))
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--reduce", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    cfg = json.load(open(a.config))
    if a.reduce:
        cfg = reduce_config(cfg)
    cfg["torch_dtype"] = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[a.dtype]
    os.makedirs(a.out, exist_ok=True)
    tok = os.path.join(a.tokenizer, "tokenizer.json")
    if not os.path.isfile(tok):
        sys.exit(f"make_random_hf: {tok}: no tokenizer.json")
    shutil.copyfile(tok, os.path.join(a.out, "tokenizer.json"))
    tc = os.path.join(a.tokenizer, "tokenizer_config.json")
    if os.path.isfile(tc):
        shutil.copyfile(tc, os.path.join(a.out, "tokenizer_config.json"))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    ts = tensors(cfg)
    esize = 4 if a.dtype == "f32" else 2
    total = sum(int(np.prod(s)) for _, s, _ in ts) * esize
    n_shards = max(1, a.shards)
    budget = -(-total // n_shards)
    groups, cur, size = [], [], 0
    for t in ts:
        nb = int(np.prod(t[1])) * esize
        if cur and size + nb > budget and len(groups) < n_shards - 1:
            groups.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += nb
    groups.append(cur)
    rng = np.random.default_rng(a.seed)
    weight_map = {}
    for k, g in enumerate(groups):
        name = "model.safetensors" if len(groups) == 1 else \
            f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        header, off = {}, 0
        for n, s, _ in g:
            nb = int(np.prod(s)) * esize
            header[n] = {"dtype": DT[a.dtype], "shape": list(s), "data_offsets": [off, off + nb]}
            off += nb
            weight_map[n] = name
        header["__metadata__"] = {"format": "pt"}
        hj = json.dumps(header, separators=(",", ":")).encode()
        hj += b" " * (-len(hj) % 8)
        with open(os.path.join(a.out, name), "wb") as f:
            f.write(len(hj).to_bytes(8, "little"))
            f.write(hj)
            for n, s, init in g:
                rows = s[0]
                step = max(1, (1 << 24) // max(1, int(np.prod(s[1:]))))
                for r in range(0, rows, step):
                    shp = (min(step, rows - r),) + tuple(s[1:])
                    if init == "normal":
                        x = rng.standard_normal(shp, dtype=np.float32) * np.float32(0.02)
                    else:
                        x = np.full(shp, 1.0 if init == "one" else 0.0, dtype=np.float32)
                    f.write(encode(x, a.dtype))
    if len(groups) > 1:
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    n_params = total // esize
    print(f"make_random_hf: {a.out}: {n_params} parameters, {total} bytes of {a.dtype} in "
          f"{len(groups)} shard(s)")


if __name__ == "__main__":
    main()
