#!/usr/bin/env bash
# Installs every Debian package the build and the tests need, when missing.
# Runs as root on Debian 12 (uses sudo otherwise, if present). Idempotent.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev libhdf5-dev libcjson-dev libcsv-dev libcriterion-dev zlib1g-dev
  hdf5-tools python3-h5py python3-numpy python3-torch
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
