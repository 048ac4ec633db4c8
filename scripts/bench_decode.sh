#!/usr/bin/env bash
# Decode speed against llama.cpp on the same GGUF files (a benchmark, not a
# test; numbers go to README.md, "Decode against llama.cpp"): random weights
# at the stories15M and stories110M shapes, written by `convert` as GGUF
# F32, Q8_0 and Q4_0; greedy from BOS, N new tokens (EOS does not end a
# run), tokens/s over the decoding steps after the prompt (BOS), our `generate` against
# llama.cpp's prebuilt libllama (tests/llamacpp/llama_run bench: F32 KV
# cache, flash attention off), 1 and 2 threads, runs alternating between
# the two programs, median of R. Each figure also as a share of the
# memory-bandwidth cap: GGUF tensor bytes x tok/s / read bandwidth
# (bench_membw, measured in the same run). With adapters: our decode with
# the bundle task t1 (two rank-8 LoRAs concatenated + LC++ rank 4, from
# `lcmt_bench gguf`: the bundle made for that GGUF) against llama.cpp with
# a random rank-20 GGUF LoRA on the same modules (scripts/bench_lora_gguf.c:
# the same products as t1), both on the same GGUF.
#   scripts/bench_decode.sh [--build DIR] [--work DIR] [--runs R] [--tokens N] [--shapes "15m 110m"]
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
build="$src/build" work=/tmp/lcmt-bench-decode runs=5 tokens=128 shapes="15m 110m"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift ;;
    --work) work="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --tokens) tokens="$2"; shift ;;
    --shapes) shapes="$2"; shift ;;
    *) echo "bench_decode.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
cmake --build "$build" -j2 --target generate convert lcmt_bench bench_membw bench_lora_gguf >/dev/null
[ -x "$build/bin/llama_run" ] || cmake --build "$build" -j2 --target llama_run >/dev/null 2>&1 ||
  { echo "bench_decode.sh: $build/bin/llama_run missing (scripts/setup.sh installs node-llama-cpp)" >&2; exit 1; }
bin="$build/bin"
mkdir -p "$work"
bw1=$(OMP_NUM_THREADS=1 "$bin/bench_membw" 1024 5 | sed -n 's/read bandwidth: \([0-9.]*\) GB.*/\1/p')
bw2=$(OMP_NUM_THREADS=2 "$bin/bench_membw" 1024 5 | sed -n 's/read bandwidth: \([0-9.]*\) GB.*/\1/p')
echo "read bandwidth: ${bw1} GB/s (1 thread), ${bw2} GB/s (2 threads)"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ours() { # threads model [extra...]
  local t="$1" m="$2"; shift 2
  OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=1 "$bin/generate" --model "$m" --prompt-ids 1 --max-new-tokens "$tokens" \
    --temperature 0 --no-stop --print-ids "$@" 2>&1 >/dev/null | sed -n 's/.*decoding steps, \([0-9.]*\) tok\/s).*/\1/p'
}
theirs() { # threads model [--lora FILE]
  LLAMA_RUN_THREADS=$1 "$bin/llama_run" bench "$2" "$tokens" 1 "${@:3}" | sed -n 's/.*: \([0-9.]*\) tok\/s$/\1/p'
}
echo
echo "| shape | type | threads | GGUF MB | ours tok/s | llama.cpp tok/s | ours / llama.cpp | ours % of bandwidth | llama.cpp % | ours + bundle task t1 | llama.cpp + rank-20 LoRA | ours / llama.cpp, adapters |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for shape in $shapes; do
  d="$work/$shape"
  [ -f "$d/b.lcb" ] || "$bin/lcmt_bench" "make$shape" "$d" >/dev/null 2>&1
  lr="$d/lora-r20.gguf"
  [ -f "$lr" ] || "$bin/bench_lora_gguf" "$d" 20 "$lr" >/dev/null 2>&1
  for ty in f32 q8_0 q4_0; do
    g="$d/model-$ty.gguf"
    [ -f "$g" ] || "$bin/convert" --model "$d" --tokenizer "$d/tok32000.bin" --out "$g" --type "$ty" >/dev/null 2>&1
    [ -f "$d/b-$ty.lcb" ] || "$bin/lcmt_bench" gguf "$d" "$ty" >/dev/null 2>&1 # the bundle made for this GGUF's tensors
    mb=$(stat -c %s "$g")
    for t in 1 2; do
      o=() l=() b=() la=()
      ours "$t" "$g" >/dev/null; theirs "$t" "$g" >/dev/null # warm-up: page cache, CPU clocks
      for r in $(seq "$runs"); do
        o+=("$(ours "$t" "$g")")
        l+=("$(theirs "$t" "$g")")
        b+=("$(ours "$t" "$g" --bundle "$d/b-$ty.lcb" --task t1)")
        la+=("$(theirs "$t" "$g" --lora "$lr")")
      done
      om=$(printf '%s\n' "${o[@]}" | median) lm=$(printf '%s\n' "${l[@]}" | median) bm=$(printf '%s\n' "${b[@]}" | median)
      lam=$(printf '%s\n' "${la[@]}" | median)
      bw=$([ "$t" = 1 ] && echo "$bw1" || echo "$bw2")
      awk -v s="$shape" -v ty="$ty" -v t="$t" -v mb="$mb" -v o="$om" -v l="$lm" -v b="$bm" -v la="$lam" -v bw="$bw" 'BEGIN {
        printf "| %s | %s | %d | %.1f | %.1f | %.1f | %.2f | %.0f %% | %.0f %% | %.1f | %.1f | %.2f |\n", s, ty, t, mb / 1e6, o, l, o / l,
          100 * mb * o / (bw * 1e9), 100 * mb * l / (bw * 1e9), b, la, b / la }'
    done
  done
done
