#!/usr/bin/env bash
# The project's test command: installs what the tests need, builds, runs the
# whole Criterion suite with ctest, then again under AddressSanitizer and
# UndefinedBehaviorSanitizer, then fuzzes every reader of outside bytes for
# a minute each (scripts/fuzz.sh: libFuzzer, clang-14, ASan + UBSan). Exits
# non-zero if anything fails.
#   bash scripts/test.sh            # everything (about 30 min on 2 cores)
#   bash scripts/test.sh --no-asan  # skip the sanitizer pass
#   bash scripts/test.sh --no-fuzz  # skip the fuzzing pass
#   LC_FUZZ_TIME=S                  # seconds per harness (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
asan=1 fuzz=1
for a in "$@"; do
  case "$a" in
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    *) echo "test.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh

if [ -d ../shared/assets ]; then
  echo "test.sh: ../shared/assets found: tests that need the real assets will run" >&2
else
  echo "test.sh: ../shared/assets NOT found: tests that need it will be SKIPPED (visible in the output)" >&2
fi

jobs=2
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure --no-tests=error)

if [ "$asan" = 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLC_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  (cd build-asan && ctest --output-on-failure --no-tests=error)
fi
if [ "$fuzz" = 1 ]; then
  bash scripts/fuzz.sh --time "${LC_FUZZ_TIME:-60}"
fi
echo "test.sh: all tests passed" >&2
