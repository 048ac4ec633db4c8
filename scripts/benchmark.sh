#!/usr/bin/env bash
# The compositional benchmark, end to end, from the configs in
# configs/benchmark/<NAME>/ (made by scripts/gen_benchmark_configs.py):
#   data (scripts/make_benchmark_data.py, from ../shared's DialogSum, with
#   apertium and rule-made tones) -> [for a self-pretrained base: its
#   corpus, a BPE tokenizer (scripts/train_bpe.py) and full-parameter
#   pretraining, from pretrain-data.json and pretrain.json] -> nine
#   single-task LoRAs -> a joint-expert
#   LoRA per variant -> `calibrate` (14 variants x every method) -> `export`
#   (a bundle with LC++ for every variant) -> the bundle scored as shipped
#   (scripts/bundle_check.py) -> tables and plot
#   (scripts/bench_tables.py) in results/benchmark-<NAME>/.
#
#   bash scripts/benchmark.sh [NAME] [--quick] [--variants V1,V2,... [--methods M1,M2,...]]
#
# NAME defaults to stories260k. Finished steps are skipped when run again
# (LoRAs with a final/ folder, calibrate jobs with a results.json), so an
# interrupted run continues. --quick runs two variants (summary+es,
# reply+casual) with a few methods: a smoke test of the pipeline, not the
# benchmark. --variants runs every method on the listed variants only
# (e.g. summary+es,summary+casual,reply+es,reply+casual: the paper's four
# tasks, one variant each), with the LoRAs their families need (a Shared LC
# trains on the whole family); --methods then limits
# the methods (names as in calibrate.json). Prints which step of
# how many is running, with the ETA.
#
# Across machines (a shared file system, e.g. one Slurm job array per stage):
#   --stage base        data [and the self-pretrained base]: run once
#   --stage adapters    the single-task LoRAs and joint experts
#   --stage calibrate   the calibrate jobs, in units of (family, method): a
#                       Shared LC trains on its whole family, so a family's
#                       jobs of one method stay together
#   --stage finish      the run summary, export, bundle check, tables: once
#   --shard I/N         with adapters or calibrate: only units I, I+N, ...
#                       (0 <= I < N), e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT
#   --list              print the steps this invocation would run, run nothing
# Every stage skips what is finished, so a failed array task is rerun as is;
# the files are those of a one-process run (README, "Scale-out with MPI").
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=stories260k
QUICK=0
SUBSET=""
METHODS=""
STAGE=all
SHARD=0/1
LIST=0
ALLARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --variants) SUBSET="${2:?--variants needs a comma-separated list}"; shift ;;
    --methods) METHODS="${2:?--methods needs a comma-separated list}"; shift ;;
    --stage) STAGE="${2:?--stage needs base, adapters, calibrate or finish}"; shift ;;
    --shard) SHARD="${2:?--shard needs I/N}"; shift ;;
    --list) LIST=1 ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    -*) echo "benchmark: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) NAME="$1" ;;
  esac
  shift
done
case "$STAGE" in all|base|adapters|calibrate|finish) ;; *) echo "benchmark: --stage $STAGE: not base, adapters, calibrate or finish" >&2; exit 2 ;; esac
if ! [[ "$SHARD" =~ ^[0-9]+/[0-9]+$ ]] || [ "${SHARD%/*}" -ge "${SHARD#*/}" ]; then
  echo "benchmark: --shard $SHARD: not I/N with 0 <= I < N" >&2; exit 2
fi
SI=${SHARD%/*} SN=${SHARD#*/}
C=configs/benchmark/$NAME
[ -f "$C/calibrate.json" ] || { echo "benchmark: no configs in $C (scripts/gen_benchmark_configs.py makes them)" >&2; exit 2; }
DS=../shared/assets/dialogsum
read -r DATA BUILD < <(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["dir"], int(d["build"]))' "$C/data.json")
if [ "$BUILD" = 1 ]; then
  [ -f "$DS/train.jsonl" ] || { echo "benchmark: needs $DS (the DialogSum data in ../shared) to build $DATA" >&2; exit 2; }
else
  [ "$STAGE" = base ] || [ "$STAGE" = all ] || [ "$LIST" = 1 ] || /usr/bin/python3 scripts/check_bench_data.py "$C" || exit 2
fi
if [ "$LIST" = 0 ]; then
  bash scripts/setup.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build build -j2 --target train calibrate evaluate export generate >/dev/null
B=build/bin
# the commit the programs were built from (run.json records it, not the
# commit checked out when the run ends)
BUILT_FROM=$(git rev-parse HEAD 2>/dev/null || echo unknown)
BUILT_DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
RUNS=runs/benchmark-$NAME
OUT=results/benchmark-$NAME
if [ "$QUICK" = 1 ]; then
  VARIANTS="summary+es reply+casual"
  LORAS="summarize reply translate-es tone-casual"
  ONLY="zero-shot,main-task LoRA,multi-step,joint expert,linear,TIES,LC,LC++"
  OUT=$RUNS/quick-results
elif [ -n "$SUBSET" ]; then
  VARIANTS=$(echo "$SUBSET" | tr ',' ' ')
  for v in $VARIANTS; do
    [ -f "$C/joint-$v.json" ] || { echo "benchmark: no variant '$v' in $C (see its joint-*.json)" >&2; exit 2; }
  done
  ONLY="$METHODS"
  # the adapters the selected jobs need, as calibrate itself decides (a
  # selected Shared LC trains on every task of its family)
  LORAS=$($B/calibrate --config "$C/calibrate.json" --tasks "$SUBSET" ${ONLY:+--only "$ONLY"} --plan |
    /usr/bin/python3 -c 'import json,sys; print(" ".join(sorted(j["adapter"] for j in map(json.loads, sys.stdin) if "adapter" in j)))')
else
  VARIANTS=$(ls $C/joint-*.json | sed 's#.*/joint-##; s#\.json##')
  LORAS=$(ls $C/lora-*.json | sed 's#.*/lora-##; s#\.json##')
  ONLY=""
fi
steps=()
want() { [ "$STAGE" = all ] || [ "$STAGE" = "$1" ]; }
if want base; then
  steps+=("data")
  if [ -f "$C/pretrain-data.json" ]; then steps+=("pretrain-data" "tokenizer" "pretrain"); fi
fi
u=0  # unit index within the stage, for --shard
if want adapters; then
  for l in $LORAS; do [ $((u++ % SN)) = "$SI" ] && steps+=("lora $l"); done
  for v in $VARIANTS; do [ $((u++ % SN)) = "$SI" ] && steps+=("joint $v"); done
fi
if [ "$STAGE" = calibrate ]; then
  # (family, method) units of the selected jobs, in calibrate's run order;
  # tab-separated: family, tasks (comma-separated), method
  units=$($B/calibrate --config "$C/calibrate.json" --tasks "$(echo $VARIANTS | tr ' ' ',')" ${ONLY:+--only "$ONLY"} --plan |
    /usr/bin/python3 -c '
import json, sys
units = {}
for j in map(json.loads, sys.stdin):
    if "job" in j:
        units.setdefault((j["family"], j["method"]), []).append(j["task"])
for (fam, meth), tasks in units.items():
    print("%s\t%s\t%s" % (fam, ",".join(tasks), meth))')
  while IFS=$'\t' read -r fam tasks meth; do
    [ $((u++ % SN)) = "$SI" ] && steps+=("calibrate-unit	$tasks	$meth")
  done <<< "$units"
elif want finish; then
  steps+=("calibrate" "export" "bundle-check" "tables")
fi
if [ "$LIST" = 1 ]; then printf '%s\n' "${steps[@]}"; exit 0; fi
N=${#steps[@]}
t0=$(date +%s)
i=0
for s in "${steps[@]}"; do
  i=$((i + 1))
  el=$(( $(date +%s) - t0 ))
  eta="?"
  [ $i -gt 1 ] && eta="$(( el * (N - i + 1) / (i - 1) / 60 ))m"
  echo "== benchmark [$i/$N] $s (elapsed $((el / 60))m$((el % 60))s, ETA $eta)" >&2
  IFS=$' \t' read -r -a w <<< "$s"
  [ "${w[0]}" = calibrate-unit ] && IFS=$'\t' read -r -a w <<< "$s"  # method names may hold spaces
  set -- "${w[@]}"
  case "$1" in
    data) if [ "$BUILD" = 1 ]; then /usr/bin/python3 scripts/make_benchmark_data.py "$DS" "$DATA" --sizes small; fi ;;
    pretrain-data)
      read -r corpus english translated pack < <(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["corpus"], d["english"], d["translated"], d["pack_chars"])' "$C/pretrain-data.json")
      [ -f "$corpus" ] || /usr/bin/python3 scripts/make_benchmark_data.py "$DS" "$DATA" --sizes small \
        --pretrain-only "$corpus" --pretrain-english "$english" --pretrain-translated "$translated" \
        --pretrain-pack-chars "$pack" ;;
    tokenizer)
      read -r corpus tdir vocab < <(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["corpus"], d["tokenizer_dir"], d["vocab"])' "$C/pretrain-data.json")
      [ -f "$tdir/tokenizer.json" ] || /usr/bin/python3 scripts/train_bpe.py "$corpus" "$tdir" --vocab "$vocab" ;;
    pretrain) [ -d "$RUNS/base/final" ] || $B/train --config "$C/pretrain.json" --resume ;;
    lora) [ -d "$RUNS/lora-$2/final" ] || $B/train --config "$C/lora-$2.json" --resume ;;
    joint) [ -d "$RUNS/joint-$2/final" ] || $B/train --config "$C/joint-$2.json" --resume ;;
    calibrate-unit) $B/calibrate --config "$C/calibrate.json" --resume --no-summary --tasks "$2" --only "$3" ;;
    calibrate)
      tasks=$(echo $VARIANTS | tr ' ' ',')
      if [ -n "$ONLY" ]; then
        $B/calibrate --config "$C/calibrate.json" --resume --tasks "$tasks" --only "$ONLY"
      else
        $B/calibrate --config "$C/calibrate.json" --resume --tasks "$tasks"
      fi ;;
    export)
      if [ "$QUICK" = 0 ] && [ -z "$SUBSET" ]; then $B/export --config "$C/export.json"
      else echo "benchmark: export skipped (export.json bundles all 14 variants; this run has a subset)" >&2; fi ;;
    bundle-check)
      # the exported bundle (f16) scored as shipped, against calibrate's f32 jobs
      if [ "$QUICK" = 0 ] && [ -z "$SUBSET" ]; then
        mkdir -p "$OUT"
        /usr/bin/python3 scripts/bundle_check.py "$C/calibrate.json" "$C/export.json" "$RUNS/bundle-check" \
          "$OUT/bundle-check.md" --bin "$B" >/dev/null
      else echo "benchmark: bundle check skipped (no bundle in a subset run)" >&2; fi ;;
    tables)
      /usr/bin/python3 scripts/bench_tables.py "$RUNS/calibrate" "$OUT" --config "$C/calibrate.json" --title "$NAME${SUBSET:+ (variants $SUBSET)}"
      cp "$DATA/manifest.json" "$OUT/data-manifest.json" 2>/dev/null || true
      /usr/bin/python3 - "$OUT/run.json" "$NAME" "$ALLARGS" "$(( $(date +%s) - t0 ))" "$VARIANTS" "$BUILT_FROM" "$BUILT_DIRTY" <<'PY'
import json, os, platform, sys, time
out, name, args, secs, variants, git, dirty = sys.argv[1:8]
dirty = int(dirty) > 0
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
# what libgomp (and the OpenMP OpenBLAS) used: OMP_NUM_THREADS, else the CPUs this process may run on
threads = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit() else len(os.sched_getaffinity(0))
json.dump({"benchmark": name, "command": "bash scripts/benchmark.sh " + args, "git_commit": git,
           "git_dirty": dirty, "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
           "this_invocation_seconds": int(secs), "variants": variants.split(),
           "machine": {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()},
           # the bits depend on it: OpenBLAS's sgemm gives other last bits
           # with another thread count (README, "Which code and how many threads")
           "threads": threads,
           "seeds": "every config's training.seed / init_seed / merge seed, and make_benchmark_data.py --seed 1"},
          open(out, "w"), indent=1)
PY
      ;;
  esac
done
echo "benchmark: tables and plot in $OUT" >&2
