#!/usr/bin/env python3
"""Writes the job configs of the compositional benchmark for one base model
(committed under configs/benchmark/<name>/, so every run is a config a user
can read and edit):

    gen_benchmark_configs.py NAME --model PATH --tokenizer PATH [--data runs/bench-data]
                             [--lora-steps 200] [--cal-steps 100] [--max-len 512]
                             [--test-examples 50]
                             [--pretrain-shape D,L,H,KV,F,V --pretrain-steps N ...]

  lora-<task>.json    `train`: the nine single-task LoRAs (summarize, reply,
                      translate-{es,ca,fr}, tone-{professional,casual,witty,
                      paraphrase})
  joint-<variant>.json `train`: a joint-expert LoRA per compositional variant
  calibrate.json      `calibrate`: the 14 variants x every method
  export.json         `export`: a bundle with LC++ for every variant
  data.json           where the data is and whether scripts/benchmark.sh
                      builds it (make_benchmark_data.py) or, with
                      --user-data, only checks that the files are there

With --pretrain-shape the base is one the toolchain pretrains itself, and
three more files are written (scripts/benchmark.sh runs them first):
  pretrain-data.json  the corpus (scripts/make_benchmark_data.py
                      --pretrain-only) and tokenizer (scripts/train_bpe.py)
                      to build
  model-config.json   the new model's Hugging Face config.json
  pretrain.json       `train` in full mode from that config (`init`)
--model and --tokenizer then default to that run's outputs.

Paths in the configs are relative to the config's folder (configs/README.md),
so NAME's folder must stay two levels below the repository root.
"""
import argparse
import json
import os

LANGS = {"es": "Spanish", "ca": "Catalan", "fr": "French"}
TONES = {"professional": "Professional", "casual": "Casual", "witty": "Witty",
         "paraphrase": "Paraphrase"}
MAINS = {"summary": ("summarize", "{dialogue}\nSummary:", "Summary"),
         "reply": ("reply", "{dialogue}\nReply:", "Reply")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--model", help="relative to the repository root")
    ap.add_argument("--tokenizer", help="relative to the repository root")
    ap.add_argument("--pretrain-shape", metavar="D,L,H,KV,F,V",
                    help="pretrain a new base: hidden size, layers, heads, KV heads, MLP size, vocabulary")
    ap.add_argument("--pretrain-steps", type=int, default=1000)
    ap.add_argument("--pretrain-batch", type=int, default=16)
    ap.add_argument("--pretrain-max-len", type=int, default=320)
    ap.add_argument("--pretrain-lr", type=float, default=0.002)
    ap.add_argument("--pretrain-english", type=int, default=4600)
    ap.add_argument("--pretrain-translated", type=int, default=1500)
    ap.add_argument("--pretrain-pack-chars", type=int, default=700)
    ap.add_argument("--data", default="runs/bench-data")
    ap.add_argument("--runs", default=None, help="default runs/benchmark-NAME")
    ap.add_argument("--out", default=None, help="write here instead of configs/benchmark/NAME (e.g. to compare)")
    ap.add_argument("--lora-steps", type=int, default=200)
    ap.add_argument("--cal-steps", type=int, default=100)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--test-examples", type=int, default=50)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8, help="batch size of LoRA training and calibration")
    ap.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    ap.add_argument("--lora-lr", type=float, default=0.003)
    ap.add_argument("--cal-lr", type=float, default=0.01)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--user-data", action="store_true",
                    help="--data holds data the user exported (scripts/benchmark.sh checks it, does not build it)")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = a.out or os.path.join(root, "configs", "benchmark", a.name)
    os.makedirs(out, exist_ok=True)
    up = "../../../"  # from configs/benchmark/NAME to the root
    runs = a.runs or "runs/benchmark-" + a.name

    def write(fname, obj):
        with open(os.path.join(out, fname), "w") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")

    if a.pretrain_shape:
        try:
            D, L, H, KV, F, V = (int(x) for x in a.pretrain_shape.split(","))
        except ValueError:
            ap.error("--pretrain-shape wants six integers D,L,H,KV,F,V")
        a.model = a.model or runs + "/base/final"
        a.tokenizer = a.tokenizer or runs + "/tokenizer/tokenizer.json"
        write("pretrain-data.json", {
            "corpus": runs + "/pretrain_text.jsonl", "english": a.pretrain_english,
            "translated": a.pretrain_translated, "pack_chars": a.pretrain_pack_chars,
            "tokenizer_dir": runs + "/tokenizer", "vocab": V})
        write("model-config.json", {
            "model_type": "llama", "hidden_size": D, "num_hidden_layers": L, "num_attention_heads": H,
            "num_key_value_heads": KV, "intermediate_size": F, "vocab_size": V,
            "max_position_embeddings": max(512, a.max_len), "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
            "tie_word_embeddings": True, "bos_token_id": 256, "eos_token_id": 257})
        write("pretrain.json", {
            "init": {"config": "model-config.json", "seed": 1, "std": 0.02},
            "tokenizer": up + a.tokenizer, "output_dir": up + runs + "/base", "mode": "full",
            "data": {"train": up + runs + "/pretrain_text.jsonl", "prompt_template": "",
                     "target_template": "{text}", "max_len": a.pretrain_max_len, "on_bad_row": "skip"},
            "training": {"batch_size": a.pretrain_batch, "steps": a.pretrain_steps, "seed": 1,
                         "checkpoint_every": 100, "log_every": 25},
            "optimizer": {"lr": a.pretrain_lr, "weight_decay": 0.01, "schedule": "cosine",
                          "warmup_steps": 50, "min_lr_ratio": 0.1},
            "output": {"peft": True, "hdf5": False}})
    if not a.model or not a.tokenizer:
        ap.error("--model and --tokenizer are required (unless --pretrain-shape)")
    model, tok, data, R = up + a.model, up + a.tokenizer, up + a.data, up + runs

    write("data.json", {"dir": a.data, "build": not a.user_data})
    training = {"batch_size": a.batch, "grad_accum": a.grad_accum, "steps": a.lora_steps, "seed": 1, "eval_every": a.lora_steps // 2,
                "checkpoint_every": a.lora_steps // 2, "log_every": 25}
    optimizer = {"lr": a.lora_lr, "schedule": "cosine", "warmup_steps": 20}
    lora = {"rank": a.rank, "alpha": 2 * a.rank, "dropout": 0.05}
    # single tasks: (name, file stem, prompt, target)
    singles = [("summarize", "summarize", "{dialogue}\nSummary:", " {summary}"),
               ("reply", "reply", "{dialogue}\nReply:", " {reply}")]
    singles += [("translate-" + l, "translate_" + l, "{text}\n%s:" % n, " {target}") for l, n in LANGS.items()]
    singles += [("tone-" + t, "tone_" + t, "{text}\n%s:" % n, " {target}") for t, n in TONES.items()]
    for name, stem, p, t in singles:
        write("lora-%s.json" % name, {
            "model": model, "tokenizer": tok, "output_dir": "%s/lora-%s" % (R, name), "mode": "lora",
            "lora": lora,
            "data": {"train": "%s/single/%s_train.jsonl" % (data, stem),
                     "validation": "%s/single/%s_validation.jsonl" % (data, stem),
                     "prompt_template": p, "target_template": t, "max_len": a.max_len,
                     "max_val_examples": 40, "on_bad_row": "skip"},
            "training": training, "optimizer": optimizer})
    tasks, variants = [], []
    for main_t, (single, first, mname) in MAINS.items():
        for aux, aname in list(LANGS.items()) + list(TONES.items()):
            is_lang = aux in LANGS
            v = "%s+%s" % (main_t, aux)
            stem = "%s_%s" % (main_t, aux)
            prompt = ("{dialogue}\n%s in %s:" % (mname, aname)) if is_lang else \
                     ("{dialogue}\n%s %s:" % (aname, mname.lower()))
            aux_adapter = ("translate-" if is_lang else "tone-") + aux
            variants.append((v, stem, prompt))
            d = {"train": "%s/comp/%s_train.jsonl" % (data, stem),
                 "validation": "%s/comp/%s_validation.jsonl" % (data, stem),
                 "test": "%s/comp/%s_test.jsonl" % (data, stem),
                 "prompt_template": prompt, "target_template": " {target}", "max_len": a.max_len,
                 "max_test_examples": a.test_examples, "on_bad_row": "skip"}
            tasks.append({"name": v, "family": "%s+%s" % (main_t, "translate" if is_lang else "tone"),
                          "adapters": [single, aux_adapter],
                          "metric": "rougeL" if main_t == "summary" else "weighted_rouge",
                          "joint_expert": "%s/joint-%s/final" % (R, v),
                          "data": d,
                          "multi_step": {"first_prompt_template": first,
                                         "second_prompt_template": "{output}\n%s:" % aname}})
            write("joint-%s.json" % v, {
                "model": model, "tokenizer": tok, "output_dir": "%s/joint-%s" % (R, v), "mode": "lora",
                "lora": lora,
                "data": {"train": d["train"], "validation": d["validation"], "prompt_template": prompt,
                         "target_template": " {target}", "max_len": a.max_len, "on_bad_row": "skip"},
                "training": training, "optimizer": optimizer})
    methods = [
        {"name": "zero-shot", "type": "zero_shot"},
        {"name": "main-task LoRA", "type": "main_lora"},
        {"name": "aux-task LoRA", "type": "aux_lora"},
        {"name": "multi-step", "type": "multi_step"},
        {"name": "joint expert", "type": "joint_expert"},
        {"name": "linear", "type": "merge", "merge": {"method": "linear"}},
        {"name": "SVD", "type": "merge", "merge": {"method": "svd", "svd_rank": a.rank}},
        {"name": "TIES", "type": "merge", "merge": {"method": "ties", "density": 0.5}},
        {"name": "DARE", "type": "merge", "merge": {"method": "dare_linear", "density": 0.5, "seed": 1}},
        {"name": "DARE-TIES", "type": "merge", "merge": {"method": "dare_ties", "density": 0.5, "seed": 1}},
        {"name": "slerp", "type": "merge", "merge": {"method": "slerp", "t": 0.5}},
        {"name": "LoraHub", "type": "merge", "merge": {"method": "lorahub", "budget": 40}},
        {"name": "learned merge", "type": "merge", "merge": {"method": "learned"}},
        {"name": "LC", "type": "calibrate", "calibration": {"kind": "bias"}},
        {"name": "LC++", "type": "calibrate", "calibration": {"kind": "lowrank", "rank": 4}},
        {"name": "Shared LC", "type": "calibrate", "shared": True, "calibration": {"kind": "bias"}},
        {"name": "Shared LC++", "type": "calibrate", "shared": True,
         "calibration": {"kind": "lowrank", "rank": 4}},
    ]
    adapters = [{"name": n, "path": "%s/lora-%s/best" % (R, n)} for n, _, _, _ in singles]
    write("calibrate.json", {
        "model": model, "tokenizer": tok, "output_dir": "%s/calibrate" % R,
        "adapters": adapters, "tasks": tasks, "methods": methods,
        "training": {"batch_size": a.batch, "grad_accum": a.grad_accum, "steps": a.cal_steps, "seed": 1, "eval_every": a.cal_steps,
                     "checkpoint_every": a.cal_steps // 2, "log_every": 25},
        "optimizer": {"lr": a.cal_lr, "schedule": "cosine", "warmup_steps": 10},
        "generation": {"max_new_tokens": a.max_new_tokens, "temperature": 0, "stop": ["\n"]},
        "metrics": {"tokenization": "latin"}})
    write("export.json", {
        "model": model, "calibrate_dir": "%s/calibrate" % R, "output": "%s/bundle.lcb" % R,
        "tasks": [{"task": v, "method": "LC++"} for v, _, _ in variants],
        "adapter_dtype": "f16", "calibration_dtype": "f16"})
    print("wrote %d configs to %s" % (len(os.listdir(out)), out))


if __name__ == "__main__":
    main()
