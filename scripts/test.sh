#!/usr/bin/env bash
# The project's test command: installs what the tests need, builds, runs the
# whole Criterion suite with ctest, then again under AddressSanitizer and
# UndefinedBehaviorSanitizer. Exits non-zero if anything fails.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh --no-asan  # skip the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."
asan=1
for a in "$@"; do
  case "$a" in
    --no-asan) asan=0 ;;
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
echo "test.sh: all tests passed" >&2
