#!/usr/bin/env bash
# Installs every Debian package the build and the tests need, when missing.
# Runs as root on Debian 12 (uses sudo otherwise, if present). Idempotent.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev libopenblas-openmp-dev libhdf5-dev libcjson-dev libcsv-dev libcriterion-dev zlib1g-dev
  hdf5-tools python3-h5py python3-numpy python3-torch python3-nltk
  apertium apertium-eng-spa apertium-eng-cat apertium-fra-cat fasttext gnuplot-nox
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
