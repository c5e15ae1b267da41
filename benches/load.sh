#!/usr/bin/env bash
# Whole-service load: the invoicing example under wrk on loopback, with metrics on and
# off (METRICS_ENABLED=false: same app, no layer, no /metrics), in rounds (off then on,
# then on then off, ...): on a shared machine a single pair of runs mostly measures
# which of the two got the quieter minute. The server runs on core 0, wrk on core 1.
# Prints requests/s, p50, p99 and the server's resident memory after the load for each
# run, then the median over rounds of the ratios.
#
# Usage: benches/load.sh            (3 rounds of 20 s per run)
#        ROUNDS=5 DURATION=60 CONNECTIONS=64 benches/load.sh
# Needs wrk (apt-get install -y wrk), curl and taskset. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-3}
for tool in wrk curl taskset; do
    command -v "$tool" >/dev/null || {
        echo "benches/load.sh needs $tool: apt-get install -y ${tool/taskset/util-linux}" >&2
        exit 1
    }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores: one for the server, one for wrk" >&2; exit 1; }

cargo build --release -p invoicing --bin invoicing >&2
binary=target/release/invoicing
workdir=$(mktemp -d)
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$workdir"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run NAME METRICS_ENABLED: prints "NAME requests_per_s p50 p99 rss_kib"
run() {
    local name=$1 enabled=$2 port data
    port=$(free_port)
    data="$workdir/$name"
    mkdir -p "$data"
    PORT=$port BIND=127.0.0.1 METRICS_ENABLED=$enabled RUST_LOG=warn \
        DATABASE_URL="sqlite://$data/invoicing.db" UPLOADS_DIR="$data/uploads" PDF_DIR="$data/pdf" \
        taskset -c 0 "$binary" >"$data/server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$data/server.log" >&2; exit 1; }
    curl -sf -X POST "http://127.0.0.1:$port/api/sellers" -H 'content-type: application/json' \
        -d '{"name":"Load test seller","siret":"12345678901234"}' >/dev/null
    local url="http://127.0.0.1:$port/api/sellers/1"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$url" >/dev/null
    local out
    out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
    local rps p50 p99 rss
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "$name: wrk saw errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
    echo "$name $rps $p50 $p99 $rss"
}

echo "GET /api/sellers/1, wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds, server on core 0, wrk on core 1" >&2
printf '%-6s %-12s %12s %10s %10s %12s\n' round run requests/s p50 p99 rss_after_kib
ratios=()
for round in $(seq 1 "$ROUNDS"); do
    # Which goes first alternates too, so that a drift over the run favours neither.
    if ((round % 2)); then
        off=$(run metrics_off false)
        on=$(run metrics_on true)
    else
        on=$(run metrics_on true)
        off=$(run metrics_off false)
    fi
    for line in "$off" "$on"; do
        # shellcheck disable=SC2086
        printf '%-6s %-12s %12s %10s %10s %12s\n' "$round" $line
    done
    read -r _ rps_off _ _ rss_off <<<"$off"
    read -r _ rps_on _ _ rss_on <<<"$on"
    ratios+=("$(awk -v on="$rps_on" -v off="$rps_off" -v ron="$rss_on" -v roff="$rss_off" \
        'BEGIN { printf "%.4f %d", on / off, ron - roff }')")
done
printf '%s\n' "${ratios[@]}" | awk '
    { throughput[NR] = $1; rss[NR] = $2 }
    function median(values, n,    i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (values[j] < values[i]) { t = values[i]; values[i] = values[j]; values[j] = t }
        return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
    }
    END {
        printf "throughput with metrics, per round: "
        for (i = 1; i <= NR; i++) printf "%.1f%% ", 100 * throughput[i]
        printf "\nthroughput with metrics: median %.1f%% of without (target >= 97%%)\n", 100 * median(throughput, NR)
        printf "extra RSS with metrics: median %+.0f KiB (target <= 1024 KiB)\n", median(rss, NR)
    }'
