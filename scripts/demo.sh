#!/usr/bin/env bash
# The demo on a fresh machine: install, then simulate → replay → score against the truth.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/warden demo "$@"
