#!/usr/bin/env bash
# The README's main command: installs what it needs, builds, and runs the
# pipeline that exists today on an embedded default that needs no download:
#   1. make a small template-generated dialogue -> summary data set and a
#      byte-level tokenizer (scripts/make_toy_data.py),
#   2. pretrain a tiny Llama-style base model from scratch (full-parameter
#      `train`, configs/demo/pretrain.json),
#   3. train a summarization LoRA on the frozen base (configs/demo/lora.json),
#   4. evaluate the zero-shot base and base + LoRA on the test split
#      (ROUGE, `evaluate`),
#   5. answer one request with `generate --lora`.
# Outputs go to runs/demo/. Takes a few minutes on 2 cores.
# Merging, calibration, bundles and the compositional benchmark are not
# built yet (see the README's status section).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 >/dev/null
B=build/bin
rm -rf runs/demo
/usr/bin/python3 scripts/make_toy_data.py runs/demo/data --seed 1
echo "== 1/4 pretrain a tiny base model from scratch" >&2
$B/train --config configs/demo/pretrain.json
echo "== 2/4 train a summarization LoRA on the frozen base" >&2
$B/train --config configs/demo/lora.json
echo "== 3/4 evaluate base (zero-shot) and base + LoRA" >&2
$B/evaluate --config configs/demo/eval-base.json
$B/evaluate --config configs/demo/eval-lora.json
echo "== 4/4 one request, one inference pass" >&2
prompt=$(/usr/bin/python3 -c 'import json;print(json.loads(open("runs/demo/data/test.jsonl").readline())["dialogue"])')
printf '%s\n' "$prompt" >&2
printf 'Summary:' >&2
$B/generate --model runs/demo/base/final --tokenizer runs/demo/data/tokenizer.json \
  --lora runs/demo/summarize-lora/best --prompt "$prompt
Summary:" --max-new-tokens 40 --temperature 0 --quiet | head -n 1
echo >&2
/usr/bin/python3 - <<'PY'
import json
rows = [json.load(open(f"runs/demo/eval-{w}/results.json")) for w in ("base", "lora")]
print("| model | n | ROUGE-1 | ROUGE-2 | ROUGE-L |")
print("| --- | ---: | ---: | ---: | ---: |")
for r in rows:
    print(f"| {r['label']} | {r['n']} | {r['rouge1']['f1']:.3f} | {r['rouge2']['f1']:.3f} | {r['rougeL']['f1']:.3f} |")
PY
