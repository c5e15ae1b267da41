#!/usr/bin/env bash
# Instructions per request on the axum Router and hyper server paths (callgrind, through
# gungraun: benches/request_instructions.rs), compared with the committed counts of
# benches/instructions.baseline. Fails when a scenario grows by more than 3% over its
# baseline (or when the scenarios and the baseline no longer match), and prints the table
# per request with what each configuration adds over bare.
#
# Usage: scripts/instructions.sh                  check against benches/instructions.baseline
#        scripts/instructions.sh --update         rewrite benches/instructions.baseline with
#                                                 this run; commit it, saying why
#        scripts/instructions.sh --save NAME      also keep this run as target/instructions/NAME
#        scripts/instructions.sh --against NAME   compare with target/instructions/NAME instead
#                                                 (A/B: --save before, change, --against before)
#
# Installs what it needs when it is missing: valgrind (apt-get) and gungraun-runner at the
# version of gungraun in Cargo.lock (cargo install). About a minute of valgrind on top of two
# release builds of the bench (default features with `protobuf`, and with `task-metrics`).
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=benches/instructions.baseline
update=""
save=""
while [ $# -gt 0 ]; do
    case "$1" in
        --update) update=1 ;;
        --save) save="target/instructions/${2:?--save needs a name}"; shift ;;
        --against) baseline="target/instructions/${2:?--against needs a name}"; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v valgrind >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq valgrind
fi
version=$(awk '/^name = "gungraun"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
[ -n "$version" ] || { echo "no gungraun in Cargo.lock" >&2; exit 1; }
if [ "$(gungraun-runner --version 2>/dev/null)" != "gungraun-runner $version" ]; then
    cargo install --locked --quiet gungraun-runner --version "$version"
fi
valgrind --version
gungraun-runner --version

run=$(mktemp)
trap 'rm -f "$run"' EXIT
# One JSON line per benchmark on stdout. Counts do not depend on what else runs, so the
# benchmarks of a group run side by side, one per core.
# Every scenario in one build, with the crate's default features and `protobuf`, which the
# native + exemplars scenario needs (without it, `native_histograms` is a build error).
# `protobuf` is on no request path, and a scenario is compared with its floor in the same
# binary: between builds, rustc's code layout moves hyper's own code by 300 instructions a
# request (seen when native + exemplars had a build of its own: its ratio to
# `floor_traced`, from the other build, rose by 0.12 with no change of ours). The task
# monitors' scenario alone has a build of its own, with `task-metrics`: compiled in, that
# feature costs the default path about 200 instructions even with the monitors off (the
# response future holds the inner one in an enum, and rustc moves it once more), which is
# no default user's cost; it has no floor, and no ratio is gated on it.
cargo bench --bench request_instructions --features protobuf -- --output-format=json \
    --parallel=auto >"$run"
cargo bench --bench request_instructions --features task-metrics -- --output-format=json \
    --parallel=auto '*::tower_prometheus_task_metrics' >>"$run"

# Counts depend on the compiler, the C library's allocator and valgrind: the baseline
# records them, and the report says when this run's differ.
environment="$(rustc --version), $(valgrind --version), glibc $(ldd --version | awk 'NR == 1 { print $NF }')"
args=(instructions "$run" --environment "$environment")
if [ -f "$baseline" ]; then
    args+=(--baseline "$baseline")
elif [ -z "$update" ]; then
    echo "no baseline $baseline: make one with --save or --update" >&2
    exit 1
fi
[ -n "$update" ] && args+=(--update benches/instructions.baseline)
if [ -n "$save" ]; then
    mkdir -p target/instructions
    args+=(--save "$save")
fi
python3 benches/report.py "${args[@]}"
