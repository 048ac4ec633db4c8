#!/usr/bin/env bash
# The README's main command: installs what it needs, builds, and runs the
# whole pipeline on an embedded default that needs no download:
#   1. make a small template-generated data set (scripts/make_toy_data.py):
#      dialogue -> summary, two rule-made tones (formal, casual), and the
#      compositional tasks "summary in a tone", plus a byte-level tokenizer,
#   2. pretrain a tiny Llama-style base from scratch (full-parameter `train`),
#   3. train three single-task LoRAs on the frozen base (summarize, formal,
#      casual),
#   4. `calibrate`: zero-shot, main-task LoRA, multi-step, linear and TIES
#      merges, LC, LC++ and Shared LC on both compositional tasks, evaluated
#      on their test splits,
#   5. `export` an on-device bundle (the three LoRAs + both LC++ tasks),
#   6. answer one compositional request in one pass with `generate --bundle`,
# and prints the results table. Outputs go to runs/demo/ (a few minutes on
# 2 cores after set-up).
#
#   bash scripts/demo.sh                       the embedded default
#   bash scripts/demo.sh --benchmark [ARGS]    the real benchmark instead
#                                              (needs ../shared: DialogSum);
#                                              ARGS go to scripts/benchmark.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--benchmark" ]; then
  shift
  [ -f ../shared/assets/dialogsum/train.jsonl ] || {
    echo "demo: --benchmark needs ../shared/assets/dialogsum (not present); run without it for the embedded default" >&2
    exit 2
  }
  exec bash scripts/benchmark.sh "$@"
elif [ $# -gt 0 ]; then
  echo "usage: bash scripts/demo.sh [--benchmark [NAME] [--quick] [--variants LIST]]" >&2
  exit 2
fi
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 >/dev/null
B=build/bin
C=configs/demo
rm -rf runs/demo
/usr/bin/python3 scripts/make_toy_data.py runs/demo/data --seed 1
echo "== 1/5 pretrain a tiny base model from scratch" >&2
$B/train --config $C/pretrain.json
echo "== 2/5 train three single-task LoRAs on the frozen base" >&2
$B/train --config $C/lora.json
$B/train --config $C/lora-formal.json
$B/train --config $C/lora-casual.json
echo "== 3/5 calibrate: baselines, merges, LC, LC++, Shared LC on two compositional tasks" >&2
$B/calibrate --config $C/calibrate.json
echo "== 4/5 export the on-device bundle" >&2
$B/export --config $C/export.json >&2
echo "== 5/5 one compositional request, one inference pass: generate --bundle" >&2
dialogue=$(/usr/bin/python3 -c 'import json;print(json.loads(open("runs/demo/data/comp_formal_test.jsonl").readline())["dialogue"])')
printf '%s\nFormal summary:' "$dialogue" >&2
$B/generate --model runs/demo/base/final --tokenizer runs/demo/data/tokenizer.json \
  --bundle runs/demo/bundle.lcb --task summary+formal --prompt "$dialogue" --quiet
echo >&2
n_test=$(wc -l < runs/demo/data/comp_formal_test.jsonl)
echo "Results (runs/demo/calibrate/table.md; ROUGE-L on $n_test test dialogues per task):"
cat runs/demo/calibrate/table.md
