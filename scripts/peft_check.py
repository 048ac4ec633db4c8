#!/usr/bin/python3
"""peft_check.py: load a Hugging Face model folder plus a PEFT LoRA adapter
the way PEFT interprets it, and write float64 logits for given tokens.

    /usr/bin/python3 scripts/peft_check.py MODEL_DIR ADAPTER_DIR TOKENS.json OUT.safetensors

MODEL_DIR    config.json + model.safetensors (HF names), e.g. written by the
             C model_save_hf.
ADAPTER_DIR  adapter_config.json + adapter_model.safetensors (PEFT).
TOKENS.json  {"B": b, "T": t, "tokens": [b*t ints, row-major]}.
OUT          safetensors with one F64 tensor "logits" (B, T, V).

The adapter is read from its config exactly as PEFT's LoraConfig defines it
(not from the C code): peft_type must be "LORA"; every module listed in
target_modules is adapted in every layer of layers_to_transform (all layers
when null) and must have both lora_A (r, in) and lora_B (out, r) with r =
config "r"; scale = lora_alpha / r, or lora_alpha / sqrt(r) with
use_rslora; bias "none" and fan_in_fan_out false are required (nothing else
is written by the project); a tensor outside that set is an error, as is a
target module this Llama-family model does not have. The model itself is
scripts/torch_ref.py's float64 forward (written from the architecture
definition), given this adapter as its only LoRA with merge weight 1.
Needs only torch and numpy (Debian's python3-torch)."""

import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref as tr  # noqa: E402  (float64 defaults are set on import)

PREFIX = "base_model.model.model.layers."


def fail(msg):
    sys.exit("peft_check: " + msg)


def read_peft(d, cfg):
    cpath = os.path.join(d, "adapter_config.json")
    wpath = os.path.join(d, "adapter_model.safetensors")
    with open(cpath) as f:
        ac = json.load(f)
    if ac.get("peft_type") != "LORA":
        fail("%s: peft_type %r, expected 'LORA'" % (cpath, ac.get("peft_type")))
    if ac.get("bias", "none") != "none":
        fail("%s: bias %r is not supported here" % (cpath, ac.get("bias")))
    if ac.get("fan_in_fan_out", False):
        fail("%s: fan_in_fan_out is set" % cpath)
    r = int(ac["r"])
    alpha = float(ac["lora_alpha"])
    scale = alpha / (math.sqrt(r) if ac.get("use_rslora", False) else r)
    targets = ac["target_modules"]
    if isinstance(targets, str):
        fail("%s: target_modules as a regex is not supported here" % cpath)
    short = {}
    for t in targets:
        m = t[:-5] if t.endswith("_proj") else None
        if m not in tr.MOD_PATH:
            fail("%s: target module %r is not a projection of this model" % (cpath, t))
        short[t] = m
    layers = ac.get("layers_to_transform")
    if layers is None:
        layers = list(range(cfg.L))
    elif isinstance(layers, int):
        layers = [layers]
    t, _ = tr.st_read(wpath)
    lo = {"scale": scale, "weight": 1.0, "A": {}, "B": {}, "coef": None}
    used = set()
    for l in layers:
        if not 0 <= l < cfg.L:
            fail("%s: layers_to_transform has %d, the model has %d layers" % (cpath, l, cfg.L))
        for m in short.values():
            out, inp = cfg.dims(m)
            for ab, shape in (("A", (r, inp)), ("B", (out, r))):
                n = tr.lora_name(l, m, ab)
                if n not in t:
                    fail("%s: missing %s (target %s_proj, layer %d)" % (wpath, n, m, l))
                if tuple(t[n].shape) != shape:
                    fail("%s: %s has shape %s, expected %s" % (wpath, n, list(t[n].shape),
                                                                list(shape)))
                lo[ab][(l, m)] = torch.tensor(t[n])
                used.add(n)
    extra = sorted(set(t) - used)
    if extra:
        fail("%s: tensors outside target_modules/layers_to_transform: %s" % (wpath, extra[:4]))
    return lo, ac


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model_dir, adapter_dir, tok_path, out_path = sys.argv[1:]
    torch.set_num_threads(1)
    cfg, Wnp = tr.read_model(model_dir)
    W = {n: torch.tensor(a) for n, a in Wnp.items()}
    lo, ac = read_peft(adapter_dir, cfg)
    with open(tok_path) as f:
        tj = json.load(f)
    B, T = int(tj["B"]), int(tj["T"])
    tokens = torch.tensor(tj["tokens"], dtype=torch.long).reshape(B, T)
    with torch.no_grad():
        h0 = W["model.embed_tokens.weight"][tokens]
        logits = tr.forward_from_emb(cfg, W, tr.Adapters([lo], []), h0)
    tr.st_write(out_path, [("logits", logits.numpy(), "F64")])
    print("peft_check: %s arch=%s r=%d alpha=%g modules=%s layers=%s B=%d T=%d |logits|max=%.3f"
          % (adapter_dir, cfg.arch, ac["r"], ac["lora_alpha"], ",".join(ac["target_modules"]),
             ac.get("layers_to_transform"), B, T, logits.abs().max().item()), file=sys.stderr)


if __name__ == "__main__":
    main()
