#!/usr/bin/env bash
# Installs every Debian package the build and the tests need, when missing.
# Runs as root on Debian 12 (uses sudo otherwise, if present). Idempotent.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev libopenblas-openmp-dev libhdf5-dev libcjson-dev libcsv-dev libcriterion-dev zlib1g-dev libssl-dev
  hdf5-tools time python3-h5py python3-numpy python3-torch python3-nltk python3-jinja2
  apertium apertium-eng-spa apertium-eng-cat apertium-fra-cat fasttext gnuplot-nox
  openmpi-bin libopenmpi-dev
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user file
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "setup: all Debian packages present" >&2
fi

# cJSON and libcrypto for the aarch64 build of the on-device runtime (scripts/build_aarch64.sh):
# Debian's arm64 package through multiarch.
arm=()
for p in libcjson-dev:arm64 libssl-dev:arm64; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || arm+=("$p")
done
if ((${#arm[@]})); then
  echo "setup: installing ${arm[*]} (multiarch)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${arm[@]}" >&2
fi

# Node.js and the npm packages the tests use as independent references
# (Hugging Face tokenizers, js-rouge, @huggingface/gguf, fasttext.wasm);
# pinned by tests/js/package-lock.json, installed into tests/js/node_modules.
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs npm" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >&2
fi
js="$(cd "$(dirname "$0")/.." && pwd)/tests/js"
if [ ! -f "$js/node_modules/.package-lock.json" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
  echo "setup: npm ci in tests/js" >&2
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# llama.cpp itself, the real runtime the device-side tests compare against:
# its prebuilt CPU libraries as npm's node-llama-cpp ships them (pinned by
# tests/llamacpp/package-lock.json; only the linux-x64 build, no GPU ones),
# and the headers of the exact llama.cpp source those libraries were built
# from (include/llama.h, ggml/include/*.h), taken from the git bundle inside
# the package. Nothing is built from that source and nothing is downloaded
# at run time; tests link a small C driver (tests/llamacpp/) to the libraries.
llp="$(cd "$(dirname "$0")/.." && pwd)/tests/llamacpp"
if [ "$(uname -m)" = x86_64 ]; then
  if [ ! -f "$llp/node_modules/.package-lock.json" ] || [ "$llp/package-lock.json" -nt "$llp/node_modules/.package-lock.json" ]; then
    echo "setup: npm ci in tests/llamacpp (llama.cpp's prebuilt CPU libraries)" >&2
    # npm ci refuses this lock file: the registry here lacks the optional builds for
    # other platforms (mac, windows, riscv), which --omit=optional leaves out anyway
    (cd "$llp" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    rm -rf "$llp/include"
  fi
  if [ ! -f "$llp/include/include/llama.h" ]; then
    if ! command -v git >/dev/null 2>&1; then
      SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
      $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends git >&2
    fi
    tmp=$(mktemp -d)
    git clone -q --bare "$llp/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$tmp/src.git"
    mkdir -p "$llp/include.tmp"
    git -C "$tmp/src.git" archive HEAD include ggml/include | tar -x -C "$llp/include.tmp"
    git -C "$tmp/src.git" log -1 --format=%H > "$llp/include.tmp/COMMIT"
    rm -rf "$tmp" "$llp/include"
    mv "$llp/include.tmp" "$llp/include"
  fi
fi
