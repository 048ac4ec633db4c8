#!/usr/bin/env bash
# Measures the on-device runtime (not a test; numbers go to README.md,
# "On-device runtime"): time from process start to the first generated
# token for base + bundle on stories260K and at the stories110M shape
# (random weights, F32 safetensors, also held as Q8_0 and Q4_0, and as Q8_0
# and Q4_0 GGUF files with their own bundles; warm page cache), resident memory
# against the mapped weight bytes, task switch time, binary sizes; beside the
# GGUF rows, llama.cpp's libllama on the same files (tests/llamacpp/llama_run
# first: no adapter, and a rank-20 GGUF LoRA doing t1's products), and the
# cost of a first touch of a mapped page on this machine (lcmt_bench touch).
#   scripts/bench_runtime.sh [BUILD_DIR] [WORK_DIR]
# BUILD_DIR defaults to build (configured as in the README); WORK_DIR
# (default /tmp/lcmt-bench-runtime) receives the 110M-shape files (~450 MB).
# Each row is run LCMT_BENCH_RUNS times (default 7) after a warm-up; the run
# with the median time from process start to the first token is printed.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:-$src/build}" && pwd)"
work="${2:-/tmp/lcmt-bench-runtime}"
mkdir -p "$work"
cmake --build "$build" -j2 --target lcmt_bench lcmt_runtime_shared lcmt_example test_runtime generate export calibrate convert bench_lora_gguf >/dev/null
cmake --build "$build" -j2 --target llama_run >/dev/null 2>&1 || echo "bench_runtime: no llama_run (scripts/setup.sh installs node-llama-cpp): the llama.cpp rows are left out" >&2
bench="$build/bin/lcmt_bench"

s260="$build/test_runtime/stories260K"
if [ ! -f "$s260/b.lcb" ]; then # the bundle test_runtime makes (calibrate + export on stories260K)
  (cd "$build" && ./bin/test_runtime --filter 'runtime/answers_equal_generate_bundle_stories260K' >/dev/null)
fi
[ -f "$s260/b.lcb" ] || { echo "bench_runtime: no stories260K bundle (is ../shared/assets there?)" >&2; exit 1; }
m110="$work/110m"
[ -f "$m110/b.lcb" ] || "$bench" make110m "$m110"

runs="${LCMT_BENCH_RUNS:-7}"
first_token_ms() { sed -n 's/^process start to first token: *\([0-9.]*\).*/\1/p' "$1"; }
# median_of_runs NAME SHOWN CMD...: CMD (whose last word the current time is
# appended to, `date +%s%N`) once as a warm-up, then $runs times; prints
# the run with the median time to the first token
median_of_runs() {
  local name="$1" shown="$2" i
  shift 2
  "$@" "$(date +%s%N)" >/dev/null
  echo "== $name (the run with the median time to the first token of $runs)"
  echo "\$ $shown \$(date +%s%N)"
  for i in $(seq "$runs"); do "$@" "$(date +%s%N)" >"$work/run.$i"; done
  for i in $(seq "$runs"); do echo "$(first_token_ms "$work/run.$i") $i"; done | sort -g >"$work/runs.sorted"
  cat "$work/run.$(awk -v n="$runs" 'NR == int((n + 1) / 2) {print $2}' "$work/runs.sorted")"
  echo "(start to first token over the $runs runs: $(cut -d' ' -f1 "$work/runs.sorted" | tr '\n' ' ')ms)"
}
run() { # name model tokenizer bundle task_a task_b input (LCMT_BENCH_COPY=1: weights copied, not mapped)
  cat "$2"/* "$2" "$4" >/dev/null 2>&1 || true # warm page cache
  median_of_runs "$1" "${LCMT_BENCH_COPY:+LCMT_BENCH_COPY=1 }${LCMT_BENCH_BASE_TYPE:+LCMT_BENCH_BASE_TYPE=$LCMT_BENCH_BASE_TYPE }lcmt_bench run $2 $3 $4 $5 $6 '$7'" \
    "$bench" run "$2" "$3" "$4" "$5" "$6" "$7"
}
run "stories260K (llama2.c checkpoint, read into memory) + bundle, task t1" \
  "$s260/model.bin" - "$s260/b.lcb" t1 t2 "say red blue"
run "stories110M shape (random F32 safetensors, mapped) + bundle, task t1" \
  "$m110" "$m110/tok32000.bin" "$m110/b.lcb" t1 t2 "hello"
LCMT_BENCH_COPY=1 run "the same with copy_weights (read into 2 MB pages instead of mapped)" \
  "$m110" "$m110/tok32000.bin" "$m110/b.lcb" t1 t2 "hello"
for ty in q8_0 q4_0; do # the matrices in a device's 8/4-bit types (quantized at open, as llama.cpp does)
  LCMT_BENCH_BASE_TYPE=$ty run "the same base held as $ty (base_type: quantized when opened)" \
    "$m110" "$m110/tok32000.bin" "$m110/b.lcb" t1 t2 "hello"
done
[ -f "$m110/lora-r20.gguf" ] || "$build/bin/bench_lora_gguf" "$m110" 20 "$m110/lora-r20.gguf" >/dev/null 2>&1
ids="1,$(seq -s, 100 114)" # 16 ids: the length of the runs' prompt
llama_first() { # name model [--lora FILE]: llama.cpp's libllama on the same file, one thread
  cat "$2" >/dev/null
  median_of_runs "$1" "LLAMA_RUN_THREADS=1 llama_run first $2 $ids ${*:3}" \
    env LLAMA_RUN_THREADS=1 "$build/bin/llama_run" first "$2" "$ids" "${@:3}"
}
for ty in q8_0 q4_0; do # the base as a device stores it: a GGUF in that type, used in place
  g="$m110/model-$ty.gguf" # with the tokenizer in the file, so llama.cpp loads it too
  [ -f "$g" ] || "$build/bin/convert" --model "$m110" --tokenizer "$m110/tok32000.bin" --out "$g" --type "$ty" >/dev/null 2>&1
  [ -f "$m110/b-$ty.lcb" ] || "$bench" gguf "$m110" "$ty" # the bundle made for these tensors
  run "the same base as a $ty GGUF (convert --type $ty; mapped, used in place) + its bundle" \
    "$g" "$m110/tok32000.bin" "$m110/b-$ty.lcb" t1 t2 "hello"
  [ -x "$build/bin/llama_run" ] || continue
  llama_first "llama.cpp on the same $ty GGUF, no adapter" "$g"
  llama_first "llama.cpp on the same $ty GGUF + a rank-20 GGUF LoRA (t1's products)" "$g" --lora "$m110/lora-r20.gguf"
done
echo "== first touch of a mapped file in this machine (lcmt_bench touch)"
"$bench" touch "$m110/model-q4_0.gguf"

echo "== binary sizes"
so="$(readlink -f "$build/liblcmt_runtime.so")"
strip -o "$work/liblcmt_runtime.stripped.so" "$so"
strip -o "$work/lcmt_example.stripped" "$build/bin/lcmt_example"
printf "liblcmt_runtime.so: %d bytes (%d stripped); liblcmt_runtime.a: %d bytes; lcmt_example (static runtime, stripped): %d bytes\n" \
  "$(stat -c %s "$so")" "$(stat -c %s "$work/liblcmt_runtime.stripped.so")" \
  "$(stat -c %s "$build/liblcmt_runtime.a")" "$(stat -c %s "$work/lcmt_example.stripped")"
echo "NEEDED: $(readelf -d "$so" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
