#!/usr/bin/env bash
# Creates .venv and installs Warden with its dev tools. Idempotent: a second run is quick. Sourced by
# scripts/test.sh, which then finds cargo where this found it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The compiled module (native/, Rust) is built by the install: a change to its sources reinstalls too. Its
# build is kept outside the clone, so a fresh clone (CI) rebuilds only Warden's own crate.
command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "setup: cargo (Rust) is needed to build native/; install it with rustup" >&2; exit 1; }
command -v "${CC:-cc}" >/dev/null || { echo "setup: a C compiler (cc) is needed to build PCRE2 in native/; install gcc" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warden/native-target}"
stamp=".venv/.installed-$(cat pyproject.toml native/Cargo.toml native/Cargo.lock native/src/*.rs | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
