#!/usr/bin/env bash
# Runs every check CI runs, installing what the tests need when it is missing:
#   promtool and prometheus, prometheus-alertmanager, victoria-metrics, jsonnet,
#   docker-compose, docker.io and debootstrap (Debian packages), the Python
#   prometheus-client package (the reference OpenMetrics parser), cargo-hack; valgrind
#   and gungraun-runner for the instruction counts (scripts/instructions.sh).
# Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Each step starts by printing the disk left: a run once failed with "No space left on
# device", and the figures say which step ate it.
step() {
    printf '\n==> %s\n' "$*"
    printf '    disk: %s free; target/ %s\n' "$(df -h --output=avail . | tail -n 1 | tr -d ' ')" \
        "$(du -sh target 2>/dev/null | cut -f1 || echo 0)"
}

# CI builds each crate once: incremental compilation's caches would only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "installing what the tests need"
# Prometheus, Alertmanager, VictoriaMetrics (with vmalert), jsonnet and docker-compose for
# monitoring/: the rule tests, the generated files' check, the end-to-end and scale-out runs;
# the Docker engine and debootstrap for the stack in Docker (stand-in images).
need=()
for tool in promtool:prometheus prometheus-alertmanager:prometheus-alertmanager \
    victoria-metrics:victoria-metrics vmalert:victoria-metrics jsonnet:jsonnet \
    docker-compose:docker-compose dockerd:docker.io debootstrap:debootstrap; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}"
fi
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    python3 -m pip install --quiet prometheus-client \
        || python3 -m pip install --quiet --break-system-packages prometheus-client
fi
if ! cargo hack --version >/dev/null 2>&1; then
    cargo install --locked --quiet cargo-hack
fi
promtool --version | head -n 1
python3 -c 'import prometheus_client, sys; print("python prometheus-client", prometheus_client.__version__ if hasattr(prometheus_client, "__version__") else "installed")'

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "every feature on its own (cargo hack)"
cargo hack check --workspace --each-feature --no-dev-deps

step "tests (all features: the heap tests need the counting allocator)"
# A hung test fails the run after 20 minutes instead of eating CI's 90. monitoring-checks
# runs in the next step, with its output shown.
timeout 1200 cargo test --workspace --all-features --exclude monitoring-checks

step "monitoring/: promtool, amtool, docker-compose config, end to end against real Prometheus servers"
# monitoring-checks, one test binary at a time, with their output: the static checks
# (promtool, amtool, docker-compose config, generate.sh --check, the alerts' rules), the
# dashboards parsed as PromQL, end to end against a real Prometheus and Alertmanager,
# native histograms and exemplars (flags on and off), and the scale-out run (sharded
# Prometheus servers, VictoriaMetrics, vmalert), printing the figures. The stack in Docker
# has the next step.
timeout 1200 monitoring/test.sh --skip the_stack_comes_up_in_docker

step "monitoring/docker-compose.yml up --build in Docker, checked through the containers"
# Starts dockerd when none runs (and stops it at the end); images that cannot be pulled are
# stood in for from Debian (debootstrap, Debian's prometheus and alertmanager); the app
# image from debug binaries built on the build context. About 5 minutes from no images.
timeout 900 cargo test -p monitoring-checks --test compose_stack -- --nocapture

step "runtime tests with --cfg tokio_unstable (own target dir: other RUSTFLAGS)"
RUSTFLAGS="--cfg tokio_unstable" CARGO_TARGET_DIR=target/tokio-unstable \
    timeout 600 cargo test --all-features --test runtime
# A second full build of the dependencies that nothing after this step uses.
rm -rf target/tokio-unstable

step "benches compile and run once"
timeout 600 cargo test --workspace --all-features --benches

step "instructions per request on the axum and hyper paths (callgrind) against benches/instructions.baseline"
# Installs valgrind and gungraun-runner when missing; fails when a scenario grows by
# more than 3%. After an intended change: scripts/instructions.sh --update, and a commit.
timeout 1800 scripts/instructions.sh
# The release build of the bench is not used again (the docs build into target/doc).
rm -rf target/release

step "docs, warning-free for every feature set"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
RUSTDOCFLAGS="-D warnings" cargo hack doc --each-feature --no-deps

step "done"
echo "all checks passed"
