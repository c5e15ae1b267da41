#!/usr/bin/env bash
# Copies the crate documentation (src/lib.md) into README.md between its markers.
# Usage: ./scripts/sync-readme.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
readme = open("README.md").read()
start, end = "<!-- crate docs -->\n", "<!-- end crate docs -->"
head, rest = readme.split(start, 1)
_, tail = rest.split(end, 1)
open("README.md", "w").write(head + start + open("src/lib.md").read() + end + tail)
PY
