#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, lint, type-check, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
# promtool (Debian's prometheus package) checks the alert rules and runs their unit tests.
command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null)
.venv/bin/ruff check .
.venv/bin/mypy
(cd native && cargo fmt --check && cargo clippy --release --quiet -- -D warnings)
.venv/bin/python -m pytest -q "$@"
