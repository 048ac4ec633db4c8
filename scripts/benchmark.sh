#!/usr/bin/env bash
# The compositional benchmark, end to end, from the configs in
# configs/benchmark/<NAME>/ (made by scripts/gen_benchmark_configs.py):
#   data (scripts/make_benchmark_data.py, from ../shared's DialogSum, with
#   apertium and rule-made tones) -> nine single-task LoRAs -> a joint-expert
#   LoRA per variant -> `calibrate` (14 variants x every method) -> `export`
#   (a bundle with LC++ for every variant) -> tables and plot
#   (scripts/bench_tables.py) in results/benchmark-<NAME>/.
#
#   bash scripts/benchmark.sh [NAME] [--quick]
#
# NAME defaults to stories260k. Finished steps are skipped when run again
# (LoRAs with a final/ folder, calibrate jobs with a results.json), so an
# interrupted run continues. --quick runs two variants (summary+es,
# reply+casual) with a few methods: a smoke test of the pipeline, not the
# benchmark. Prints which step of how many is running, with the ETA.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=stories260k
QUICK=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) NAME="$a" ;;
  esac
done
C=configs/benchmark/$NAME
[ -f "$C/calibrate.json" ] || { echo "benchmark: no configs in $C (scripts/gen_benchmark_configs.py makes them)" >&2; exit 2; }
DS=../shared/assets/dialogsum
[ -f "$DS/train.jsonl" ] || { echo "benchmark: needs $DS (the DialogSum data in ../shared)" >&2; exit 2; }
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 >/dev/null
B=build/bin
RUNS=runs/benchmark-$NAME
OUT=results/benchmark-$NAME
if [ "$QUICK" = 1 ]; then
  VARIANTS="summary+es reply+casual"
  LORAS="summarize reply translate-es tone-casual"
  ONLY="zero-shot,main-task LoRA,multi-step,joint expert,linear,TIES,LC,LC++"
  OUT=$RUNS/quick-results
else
  VARIANTS=$(ls $C/joint-*.json | sed 's#.*/joint-##; s#\.json##')
  LORAS=$(ls $C/lora-*.json | sed 's#.*/lora-##; s#\.json##')
  ONLY=""
fi
steps=()
steps+=("data")
for l in $LORAS; do steps+=("lora $l"); done
for v in $VARIANTS; do steps+=("joint $v"); done
steps+=("calibrate" "export" "tables")
N=${#steps[@]}
t0=$(date +%s)
i=0
for s in "${steps[@]}"; do
  i=$((i + 1))
  el=$(( $(date +%s) - t0 ))
  eta="?"
  [ $i -gt 1 ] && eta="$(( el * (N - i + 1) / (i - 1) / 60 ))m"
  echo "== benchmark [$i/$N] $s (elapsed $((el / 60))m$((el % 60))s, ETA $eta)" >&2
  set -- $s
  case "$1" in
    data) /usr/bin/python3 scripts/make_benchmark_data.py "$DS" runs/bench-data --sizes small ;;
    lora) [ -d "$RUNS/lora-$2/final" ] || $B/train --config "$C/lora-$2.json" --resume ;;
    joint) [ -d "$RUNS/joint-$2/final" ] || $B/train --config "$C/joint-$2.json" --resume ;;
    calibrate)
      tasks=$(echo $VARIANTS | tr ' ' ',')
      if [ -n "$ONLY" ]; then
        $B/calibrate --config "$C/calibrate.json" --resume --tasks "$tasks" --only "$ONLY"
      else
        $B/calibrate --config "$C/calibrate.json" --resume --tasks "$tasks"
      fi ;;
    export)
      if [ "$QUICK" = 0 ]; then $B/export --config "$C/export.json"; fi ;;
    tables)
      /usr/bin/python3 scripts/bench_tables.py "$RUNS/calibrate" "$OUT" --title "$NAME" ;;
  esac
done
echo "benchmark: tables and plot in $OUT" >&2
