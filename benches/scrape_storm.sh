#!/usr/bin/env bash
# A scrape storm beside API load: the invoicing example with `/metrics` on the API port
# (METRICS_ADDR=api), GET /api/sellers/1 under wrk, alone and then with a second wrk of
# STORM connections scraping /metrics as fast as they can (with the headers Prometheus 3
# sends: OpenMetrics first, gzip). Server on core 0, both wrk on core 1.
#
# Each binary given is run in every round, the order alternating from round to round
# (on a shared machine a single pair of runs mostly measures which got the quieter
# minute). Prints, per run, the API's requests/s alone and under the storm, and the
# storm's answers/s (2xx and others, e.g. 503 beyond the bound on scrapes in flight);
# then the median over rounds for each binary.
#
# Usage: benches/scrape_storm.sh                       (the current build, 3 rounds of 20 s)
#        benches/scrape_storm.sh before=path/to/invoicing after=target/release/invoicing
#        ROUNDS=5 DURATION=30 CONNECTIONS=32 STORM=200 benches/scrape_storm.sh ...
# Needs wrk (apt-get install -y wrk), curl, python3 and taskset. Traffic goes to
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
STORM=${STORM:-200}
WARMUP=${WARMUP:-3}
ACCEPT='application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2'
for tool in wrk curl python3 taskset; do
    command -v "$tool" >/dev/null || {
        echo "benches/scrape_storm.sh needs $tool: apt-get install -y ${tool/taskset/util-linux}" >&2
        exit 1
    }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores: one for the server, one for wrk" >&2; exit 1; }

binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
    cargo build --release -p invoicing --bin invoicing >&2
    binaries=("current=target/release/invoicing")
fi
for entry in "${binaries[@]}"; do
    [ -x "${entry#*=}" ] || { echo "not an executable: ${entry#*=}" >&2; exit 1; }
done

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

# The value of wrk's "Requests/sec" line, and of its "Non-2xx or 3xx responses" (0 if absent).
rps() { awk '/^Requests\/sec/ {print $2}' <<<"$1"; }
non2xx() { awk '/Non-2xx or 3xx responses/ {n = $NF} END {print n + 0}' <<<"$1"; }
total() { awk '/requests in/ {print $1}' <<<"$1"; }

# run NAME BINARY: prints "NAME api_alone api_storm scrapes_2xx_per_s scrapes_other_per_s"
run() {
    local name=$1 binary=$2 port data
    port=$(free_port)
    data="$workdir/$name"
    rm -rf "$data"
    mkdir -p "$data"
    PORT=$port BIND=127.0.0.1 METRICS_ADDR=api RUST_LOG=warn \
        DATABASE_URL="sqlite://$data/invoicing.db" UPLOADS_DIR="$data/uploads" PDF_DIR="$data/pdf" \
        taskset -c 0 "$binary" >"$data/server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$data/server.log" >&2; exit 1; }
    curl -sf "http://127.0.0.1:$port/metrics" >/dev/null || {
        echo "$name: no /metrics on the API port" >&2
        exit 1
    }
    curl -sf -X POST "http://127.0.0.1:$port/api/sellers" -H 'content-type: application/json' \
        -d '{"name":"Load test seller","siret":"12345678901234"}' >/dev/null
    local api="http://127.0.0.1:$port/api/sellers/1" metrics="http://127.0.0.1:$port/metrics"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$api" >/dev/null
    local alone storm_api storm
    alone=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$api")
    taskset -c 1 wrk -t1 -c"$STORM" -d"${DURATION}s" -H "Accept: $ACCEPT" \
        -H 'Accept-Encoding: gzip' "$metrics" >"$data/storm.out" &
    local storm_pid=$!
    storm_api=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$api")
    wait "$storm_pid"
    storm=$(cat "$data/storm.out")
    for out in "$alone" "$storm_api"; do
        if [ "$(non2xx "$out")" != 0 ]; then
            echo "$name: the API answered errors:" >&2
            echo "$out" >&2
            exit 1
        fi
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
    local scrapes other
    scrapes=$(total "$storm")
    other=$(non2xx "$storm")
    echo "$name $(rps "$alone") $(rps "$storm_api") $(awk -v t="$scrapes" -v o="$other" -v d="$DURATION" \
        'BEGIN { printf "%.1f %.1f", (t - o) / d, o / d }')"
}

echo "GET /api/sellers/1 wrk -t1 -c$CONNECTIONS, alone then beside GET /metrics wrk -t1 -c$STORM" \
    "(OpenMetrics, gzip), ${DURATION}s each, $ROUNDS rounds, METRICS_ADDR=api, server on core 0, wrk on core 1" >&2
printf '%-6s %-10s %14s %14s %14s %14s\n' round binary api_alone/s api_storm/s scrapes_2xx/s scrapes_other/s
results=()
for round in $(seq 1 "$ROUNDS"); do
    order=("${binaries[@]}")
    if ! ((round % 2)); then
        # Reversed every other round, so that a drift over the run favours none.
        order=()
        for ((i = ${#binaries[@]} - 1; i >= 0; i--)); do order+=("${binaries[i]}"); done
    fi
    for entry in "${order[@]}"; do
        line=$(run "${entry%%=*}" "${entry#*=}")
        # shellcheck disable=SC2086
        printf '%-6s %-10s %14s %14s %14s %14s\n' "$round" $line
        results+=("$line")
    done
done
printf '%s\n' "${results[@]}" | awk '
    function median(values, n,    i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (values[j] < values[i]) { t = values[i]; values[i] = values[j]; values[j] = t }
        return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
    }
    {
        if (!($1 in count)) names[++kinds] = $1
        n = ++count[$1]
        alone[$1, n] = $2; storm[$1, n] = $3; ok[$1, n] = $4; other[$1, n] = $5
        ratio[$1, n] = $3 / $2
    }
    END {
        for (k = 1; k <= kinds; k++) {
            name = names[k]; n = count[name]
            for (i = 1; i <= n; i++) { a[i] = alone[name, i]; s[i] = storm[name, i]; r[i] = ratio[name, i]; o[i] = ok[name, i]; x[i] = other[name, i] }
            printf "%s: median API %.0f req/s alone, %.0f req/s under the storm (%.1f%% of alone, median of the per-run ratios); scrapes answered 2xx %.1f/s, other %.1f/s\n",
                name, median(a, n), median(s, n), 100 * median(r, n), median(o, n), median(x, n)
        }
    }'
