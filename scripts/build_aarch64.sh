#!/usr/bin/env bash
# Cross-builds the on-device runtime (liblcmt_runtime.a/.so) and its
# programs (lcmt_check, lcmt_example) for aarch64 with Debian's
# gcc-aarch64-linux-gnu, for running under qemu-user:
#   scripts/build_aarch64.sh [BUILD_DIR]        (default: build-aarch64)
#   qemu-aarch64 -L /usr/aarch64-linux-gnu BUILD_DIR/bin/lcmt_check ...
# Needs gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user and
# libcjson-dev:arm64 and libssl-dev:arm64 (scripts/setup.sh installs them); fails, naming what
# is missing, when they are not there.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$src/build-aarch64}"
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=("aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)")
command -v qemu-aarch64 >/dev/null || missing+=("qemu-aarch64 (apt-get install qemu-user)")
[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/libcjson.pc ] ||
  missing+=("cJSON for arm64 (dpkg --add-architecture arm64; apt-get update; apt-get install libcjson-dev:arm64)")
[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/libcrypto.pc ] ||
  missing+=("libcrypto for arm64 (apt-get install libssl-dev:arm64; or configure with -DLCMT_SHA256=OFF)")
if ((${#missing[@]})); then
  printf 'build_aarch64: missing %s\n' "${missing[@]}" >&2
  exit 1
fi
cmake -S "$src" -B "$out" -DCMAKE_TOOLCHAIN_FILE="$src/scripts/aarch64-toolchain.cmake" \
  -DLC_RUNTIME_ONLY=ON -DLC_PACKAGE=ON -DCMAKE_BUILD_TYPE=Release >"$out.log" 2>&1 ||
  { cat "$out.log" >&2; exit 1; }
cmake --build "$out" -j2 --target lcmt_runtime lcmt_runtime_shared lcmt_check lcmt_example >>"$out.log" 2>&1 ||
  { tail -40 "$out.log" >&2; exit 1; }
file "$out/bin/lcmt_check" | grep -q aarch64 || { echo "build_aarch64: $out/bin/lcmt_check is not an aarch64 program" >&2; exit 1; }
echo "$out"
