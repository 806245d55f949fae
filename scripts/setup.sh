#!/usr/bin/env bash
# Installs every system package mlyexport needs (scripts/debian-packages.txt) and checks the Rust
# toolchain. Safe to run again: it installs only what is missing. Needs root or sudo on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t wanted < <(grep -v '^\s*#' scripts/debian-packages.txt | sed 's/\s//g' | grep -v '^$')
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust 1.88 or newer (https://rustup.rs), then run this again" >&2
  exit 1
fi
echo "setup: system packages and $(cargo --version) ready" >&2
