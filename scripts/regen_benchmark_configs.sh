#!/usr/bin/env bash
# Rewrites every config folder in configs/benchmark/ from
# scripts/gen_benchmark_configs.py: the exact arguments of each committed
# folder. With OUT=DIR it writes DIR/<name>/ instead (tests/test_bench_scripts.c
# compares that with the committed files).
set -euo pipefail
cd "$(dirname "$0")/.."
gen() { name=$1; shift; /usr/bin/python3 scripts/gen_benchmark_configs.py "$name" ${OUT:+--out "$OUT/$name"} "$@"; }
gen stories260k --model ../shared/assets/stories260K/stories260K.bin \
  --tokenizer ../shared/assets/stories260K/tok512.bin
gen scratch3m --pretrain-shape 192,6,6,2,512,2048 --pretrain-steps 1200
for m in "llama-3.2-1b Llama-3.2-1B" "qwen2.5-1.5b Qwen2.5-1.5B"; do
  set -- $m
  gen "$1" --model "models/$2" --tokenizer "models/$2/tokenizer.json" --data runs/paper-data --user-data \
    --rank 16 --lora-steps 1000 --cal-steps 500 --lora-lr 0.0002 --cal-lr 0.001 --batch 2 --grad-accum 4 \
    --max-len 1024 --test-examples 0 --max-new-tokens 128
done
