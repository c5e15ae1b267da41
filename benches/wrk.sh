#!/usr/bin/env bash
# The whole service under wrk on loopback: the minimal axum app of
# benches/whole_service.rs (GET /api/invoices/{id}, a 204-byte JSON) bare, behind the
# simplest end-of-body layer (floor), and with Metrics::new() (every default collector,
# /metrics, the layer: ours). The server runs on core 0, wrk on core 1. Rounds are
# interleaved and the order changes every round (all 6 orders in turn), so that a drift
# of the machine favours none. Prints requests/s per run, and the median and the spread
# (min–max) over the rounds of ours/bare, floor/bare and ours/floor.
#
# Usage: benches/wrk.sh                       (5 rounds of 10 s per run: about 3.5 minutes)
#        ROUNDS=7 DURATION=20 CONNECTIONS=64 benches/wrk.sh
# Needs wrk (apt-get install -y wrk) and taskset (util-linux). Traffic goes to 127.0.0.1
# only. Not run in CI: it needs a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2}
for tool in wrk taskset python3; do
    command -v "$tool" >/dev/null || {
        echo "benches/wrk.sh needs $tool: apt-get install -y ${tool/taskset/util-linux}" >&2
        exit 1
    }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores: one for the server, one for wrk" >&2; exit 1; }

# The bench binary, built as `cargo bench` builds it (release).
binary=$(cargo bench --bench whole_service --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["target"]["name"] == "whole_service":
        print(message["executable"])')
[ -x "$binary" ] || { echo "could not build benches/whole_service.rs" >&2; exit 1; }

workdir=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

# run CONFIG: prints "CONFIG requests_per_s p50 p99"
run() {
    local config=$1 log="$workdir/$1.log" address=""
    taskset -c 0 "$binary" serve "$config" 127.0.0.1:0 >"$log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        address=$(awk '/^listening on / { print $3 }' "$log")
        [ -n "$address" ] && break
        sleep 0.1
    done
    [ -n "$address" ] || { echo "$config did not start:" >&2; cat "$log" >&2; exit 1; }
    local url="http://$address/api/invoices/42" out
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$url" >/dev/null
    out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url")
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        echo "$config: wrk saw errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
    awk -v config="$config" '
        /^Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = $2 }
        $1 == "99%" { p99 = $2 }
        END { print config, rps, p50, p99 }' <<<"$out"
}

orders=("bare floor ours" "ours bare floor" "floor ours bare" "ours floor bare" "floor bare ours" "bare ours floor")
echo "GET /api/invoices/42, wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds; server on core 0, wrk on core 1"
echo "$(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-6s %12s %10s %10s\n' round run requests/s p50 p99
results="$workdir/results"
for round in $(seq 1 "$ROUNDS"); do
    for config in ${orders[$(((round - 1) % 6))]}; do
        line=$(run "$config")
        # shellcheck disable=SC2086
        printf '%-6s %-6s %12s %10s %10s\n' "$round" $line
        echo "$round $line" >>"$results"
    done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'EOF'
import statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    round_, config, rps, *_ = line.split()
    rounds.setdefault(round_, {})[config] = float(rps)
for name, a, b in [("ours / bare", "ours", "bare"), ("floor / bare", "floor", "bare"),
                   ("ours / floor", "ours", "floor")]:
    ratios = [r[a] / r[b] for r in rounds.values()]
    print(f"{name:<13} median {100 * statistics.median(ratios):6.1f}%   "
          f"spread {100 * min(ratios):.1f}–{100 * max(ratios):.1f}%   "
          f"rounds: {' '.join(f'{100 * x:.1f}' for x in ratios)}")
print("targets: ours / bare >= 97%, ours within the spread of floor / bare")
EOF
