#!/usr/bin/env bash
# Every check of monitoring/: the Rust tests of monitoring/checks/tests/, with their output.
cd "$(dirname "$0")/.." && exec cargo test -p monitoring-checks -- --nocapture --test-threads=1 "$@"
