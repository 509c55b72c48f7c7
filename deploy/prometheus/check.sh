#!/usr/bin/env bash
# Validate the Prometheus config and alert rules, and run the rules' unit tests (needs promtool:
# Debian's "prometheus" package).
set -euo pipefail
cd "$(dirname "$0")"
promtool check rules alerts.yml
promtool check config --syntax-only prometheus.yml
promtool test rules alerts_test.yml
