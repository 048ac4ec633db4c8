#!/usr/bin/env bash
# Coverage-guided fuzzing of every reader of outside bytes (tests/fuzz/):
# builds the libFuzzer harnesses with clang-14, ASan and UBSan (stopping on
# the first error) in build-fuzz/, runs each for a bounded time from the
# committed seeds, and fails on any crash, leak, timeout or out-of-memory.
# A failing input is saved to build-fuzz/crashes/<harness>/; copied to
# tests/fuzz/regress/<harness>/, the normal test suite replays it (gcc's
# sanitizers), and every run here starts from it (clang's UBSan also catches
# what gcc's does not, e.g. arithmetic on a null pointer).
#   bash scripts/fuzz.sh [--time SECONDS] [--runs N] [--only a,b] [--seed N] [--seeds]
#     --time S    seconds per harness (default 60)
#     --seed N    libFuzzer's random seed (default 1, so that a CI run is
#                 repeatable; 0 = a new one each run, for long runs)
#     --runs N    stop a harness after N executions instead (or as well)
#     --only      harnesses to run (names as in tests/fuzz/fuzz_<name>.c)
#     --seeds     remake the generated seeds (tests/fuzz/corpus/) and exit
# Prints one line per harness: executions, edges covered (cov), features
# (ft), corpus size, and the result. Installs clang if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
T=60 RUNS=0 ONLY="" SEEDS=0 SEED=1
while [ $# -gt 0 ]; do
  case "$1" in
    --time) T="${2:?}"; shift ;;
    --runs) RUNS="${2:?}"; shift ;;
    --only) ONLY="${2:?}"; shift ;;
    --seed) SEED="${2:?}"; shift ;;
    --seeds) SEEDS=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$SEEDS" = 1 ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j2 --target fuzz_make_seeds >/dev/null
  ./build/bin/fuzz_make_seeds tests/fuzz/corpus
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if ! command -v clang-14 >/dev/null || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ] ||
   ! dpkg -s libomp-14-dev >/dev/null 2>&1; then
  echo "fuzz.sh: installing clang-14, libclang-rt-14-dev, libomp-14-dev" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    clang-14 libclang-rt-14-dev libomp-14-dev >&2
fi
CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DLC_FUZZ=ON >/dev/null
cmake --build build-fuzz -j2 --target fuzzers >/dev/null
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail=0
printf '%-18s %12s %8s %8s %8s  %s\n' harness executions cov ft corpus result
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c); short=${name#fuzz_}
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$short,"* ]]; then continue; fi
  work=build-fuzz/corpus/$short crash=build-fuzz/crashes/$short
  mkdir -p "$work" "$crash"
  log=build-fuzz/$short.log
  args=(-max_total_time="$T" -timeout=10 -rss_limit_mb=2560 -malloc_limit_mb=1024 -print_final_stats=1
        -artifact_prefix="$crash/" -max_len=262144 -seed="$SEED")
  [ "$RUNS" = 0 ] || args+=(-runs="$RUNS")
  rc=0
  ./build-fuzz/bin/"$name" "${args[@]}" "$work" tests/fuzz/corpus/"$short" tests/fuzz/regress/"$short" > "$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  if [ "$rc" = 0 ]; then res=ok; else res="FAILED (rc $rc, log $log, input in $crash/)"; fail=1; fi
  printf '%-18s %12s %8s %8s %8s  %s\n' "$short" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$res"
  if [ "$rc" != 0 ]; then grep -m3 -E 'ERROR|SUMMARY|runtime error|==[0-9]+==' "$log" | sed 's/^/    /' || true; fi
done
[ "$fail" = 0 ] || { echo "fuzz.sh: a harness failed" >&2; exit 1; }
echo "fuzz.sh: no crash, leak, timeout or out-of-memory" >&2
