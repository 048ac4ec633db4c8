#!/usr/bin/env bash
# Batched evaluation against the one-at-a-time path (a benchmark, not a
# test; numbers go to README.md, "Batched evaluation"): random weights at
# the stories15M shape (lcmt_bench make15m: dim 288, 6 layers, vocabulary
# 32000), N synthetic test prompts (made here), greedy, M new tokens each
# (EOS is rare with random weights, so every answer runs its M tokens);
# `evaluate` at generation.batch_size 1 and at each batch size asked, with
# the plain base and with the bundle task t1 (two rank-8 LoRAs + LC++ rank
# 4), 1 and 2 threads, runs alternating, median of R. Two workloads:
# "eval", prompts of about 110 tokens (an evaluation: each prompt's prefill
# is one pass whatever the batch, so it bounds the speed-up), and "decode",
# 4-token prompts (the decoding alone). Prints new tokens/s over the whole
# run, the speed-up over batch 1, and for "decode" the GFLOP/s (2 x weights
# per token) as a share of the sgemm peak measured in the same run; checks
# that every batch size predicted the same bytes.
#   scripts/bench_eval.sh [--build DIR] [--work DIR] [--runs R] [--examples N] [--tokens M]
#                         [--batches "16 64"] [--threads "1 2"]
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
build="$src/build" work=/tmp/lcmt-bench-eval runs=3 n=64 tokens=64 batches="16" threads="1 2"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift ;;
    --work) work="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --examples) n="$2"; shift ;;
    --tokens) tokens="$2"; shift ;;
    --batches) batches="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    *) echo "bench_eval.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
cmake --build "$build" -j2 --target evaluate lcmt_bench bench_step >/dev/null
build="$(cd "$build" && pwd)" bin="$build/bin" # absolute: the runs cd to the work folder
mkdir -p "$work"
[ -f "$work/m15/model.safetensors" ] || "$bin/lcmt_bench" make15m "$work/m15" >/dev/null 2>&1
/usr/bin/python3 - "$work" "$n" <<'PY'
import json, random, sys
words = ("the a cat dog went to park and saw big small red blue tree house friend said hello "
         "then they played ran jumped happy sad day night sun moon").split()
r = random.Random(7)
for name, lo, hi in (("eval", 15, 25), ("decode", 0, 0)):
    with open("%s/test-%s.jsonl" % (sys.argv[1], name), "w") as f:
        for i in range(int(sys.argv[2])):
            text = " ".join(r.choice(words) for _ in range(r.randint(lo, hi))) if hi else "abc"
            f.write(json.dumps({"q": text, "a": "x"}) + "\n")
PY
peak=$(OMP_NUM_THREADS=2 "$bin/bench_step" --sgemm-peak --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["sgemm_peak_gflops"])')
echo "sgemm peak (2 threads, this run): $peak GFLOP/s"
# decoding FLOPs per new token: 2 x the matrix-vector weights (attention over a
# short context is small against them); the output matrix is tied to the embedding
params=$(/usr/bin/python3 -c 'd,l,h,v=288,6,768,32000; print(l*(4*d*d+3*d*h)+v*d)')
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
run() { # threads batch kind workload -> tok/s; predictions in $work/out-KIND-B
  local t="$1" b="$2" k="$3" wl="$4" extra=""
  [ "$k" = bundle ] && extra='"bundle": {"path": "m15/b.lcb", "task": "t1"},'
  cat > "$work/ev.json" <<JSON
{"model": "m15", "tokenizer": "m15/tok32000.bin", $extra
 "output_dir": "out-$k-$b",
 "data": {"path": "test-$wl.jsonl", "prompt_template": "{q}", "target_template": " {a}", "max_len": 128},
 "generation": {"max_new_tokens": $tokens, "batch_size": $b}}
JSON
  (cd "$work" && OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=1 "$bin/evaluate" --config ev.json >/dev/null 2>"$work/ev.log") ||
    { cat "$work/ev.log" >&2; exit 1; }
  /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["new_tokens"]/r["seconds"])' \
    "$work/out-$k-$b/results.json"
}
ls "$work/m15"/*.lcb >/dev/null 2>&1 || { echo "bench_eval.sh: lcmt_bench made no bundle in $work/m15" >&2; exit 1; }
echo "stories15M shape, $n prompts, $tokens new tokens each, median of $runs runs"
echo "| workload | weights | threads | batch | new tok/s | vs batch 1 | GFLOP/s | % of sgemm peak |"
echo "|---|---|---|---|---|---|---|---|"
for wl in eval decode; do
  for kind in base bundle; do
    for t in $threads; do
      declare -A res=()
      for r in $(seq "$runs"); do
        for b in 1 $batches; do res[$b]+="$(run "$t" "$b" "$kind" "$wl") "; done
      done
      one=$(echo "${res[1]}" | tr ' ' '\n' | grep . | median)
      for b in 1 $batches; do
        m=$(echo "${res[$b]}" | tr ' ' '\n' | grep . | median)
        cmp -s "$work/out-$kind-1/predictions.jsonl" "$work/out-$kind-$b/predictions.jsonl" ||
          { echo "bench_eval.sh: batch $b predicted other bytes than batch 1 ($kind, $wl)" >&2; exit 1; }
        awk -v w="$wl" -v k="$kind" -v t="$t" -v b="$b" -v m="$m" -v one="$one" -v p="$params" -v pk="$peak" 'BEGIN {
          g = 2 * p * m / 1e9
          if (w == "decode") printf "| %s | %s | %s | %s | %.0f | %.2fx | %.1f | %.0f %% |\n", w, k, t, b, m, m / one, g, 100 * g / pk
          else printf "| %s | %s | %s | %s | %.0f | %.2fx | | |\n", w, k, t, b, m, m / one }'
      done
      unset res
    done
  done
done
