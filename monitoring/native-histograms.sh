#!/usr/bin/env bash
# Proves native histograms and exemplars with a real Prometheus (Debian's 2.42), on
# 127.0.0.1, in about 40 s after the build:
#   1. the invoicing app (native histograms and exemplars on, feature `protobuf`) gets
#      requests with sampled W3C `traceparent` headers, whose trace ids are kept;
#   2. one Prometheus runs with --enable-feature=native-histograms,exemplar-storage,
#      another without; both also scrape a listener that records their Accept header;
#   3. through the first one's HTTP API: rate(http_server_request_duration_seconds[1m])
#      has a `histogram` field, histogram_quantile(0.99, sum(rate(...))) is a number,
#      /api/v1/query_exemplars returns trace ids, all of them among those sent; the
#      Accept header it sent is the one the exporter's unit tests use;
#   4. through the second one's: the classic _bucket series are scraped, and the same
#      rate() has no native histogram;
#   5. the "(native)" panels of grafana/dashboards/service-overview.json: their native
#      operand returns series from the first, the whole query (with its classic
#      fallback) from the second.
# Usage: monitoring/native-histograms.sh   (called by scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n--> %s\n' "$*"; }
die() { echo "monitoring/native-histograms.sh: $*" >&2; exit 1; }

for tool in prometheus python3 curl cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "missing $tool. Install with: apt-get install -y prometheus python3 curl"
done
prometheus --version 2>&1 | head -n 1

step "build the app"
cargo build --quiet -p invoicing --bins
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/debug"
BUILT=$SECONDS

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$status" != 0 ]; then
        for log in "$TMP"/*.log; do
            [ -f "$log" ] || continue
            echo "---- last lines of $(basename "$log")" >&2
            tail -n 20 "$log" >&2
        done
    fi
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
wait_http() { # url, what, seconds
    for _ in $(seq $(($3 * 10))); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$2 did not answer $1 within $3 s"
}

APP_PORT=$(free_port)
CAPTURE_PORT=$(free_port)
NATIVE_PORT=$(free_port)
CLASSIC_PORT=$(free_port)
mkdir -p "$TMP/data"

step "start the invoicing app on 127.0.0.1:$APP_PORT"
BIND=127.0.0.1 PORT=$APP_PORT DATABASE_URL="sqlite://$TMP/data/invoicing.db" \
    UPLOADS_DIR="$TMP/data/uploads" PDF_DIR="$TMP/data/pdf-a3" RUST_LOG=warn \
    "$BIN/invoicing" >"$TMP/app.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$APP_PORT/health" "the app" 30

step "a listener recording the Accept header of each scraper, on 127.0.0.1:$CAPTURE_PORT"
python3 - "$CAPTURE_PORT" "$TMP/accept" >"$TMP/capture.log" 2>&1 <<'PY' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # The scraper says who it is in the path: /native or /classic.
        with open(f"{out}{self.path.replace('/', '.')}", "w") as f:
            f.write(self.headers.get("Accept", ""))
        body = b"# TYPE capture_up gauge\ncapture_up 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
PIDS+=($!)
wait_http "http://127.0.0.1:$CAPTURE_PORT/probe" "the capture listener" 10

for kind in native classic; do
    cat >"$TMP/prometheus-$kind.yml" <<YML
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: invoicing
    static_configs: [{targets: ["127.0.0.1:$APP_PORT"]}]
  - job_name: capture
    metrics_path: /$kind
    static_configs: [{targets: ["127.0.0.1:$CAPTURE_PORT"]}]
YML
done

step "start prometheus with and without the native-histogram flags"
prometheus --config.file="$TMP/prometheus-native.yml" --storage.tsdb.path="$TMP/tsdb-native" \
    --web.listen-address="127.0.0.1:$NATIVE_PORT" \
    --enable-feature=native-histograms,exemplar-storage >"$TMP/prometheus-native.log" 2>&1 &
PIDS+=($!)
prometheus --config.file="$TMP/prometheus-classic.yml" --storage.tsdb.path="$TMP/tsdb-classic" \
    --web.listen-address="127.0.0.1:$CLASSIC_PORT" >"$TMP/prometheus-classic.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$NATIVE_PORT/-/ready" "prometheus (native)" 60
wait_http "http://127.0.0.1:$CLASSIC_PORT/-/ready" "prometheus (classic)" 60

step "requests with sampled traceparent headers, for 12 s"
: >"$TMP/trace-ids"
END=$(($(date +%s) + 12))
n=0
while [ "$(date +%s)" -lt "$END" ]; do
    trace=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    span=$(python3 -c 'import secrets; print(secrets.token_hex(8))')
    echo "$trace" >>"$TMP/trace-ids"
    for path in /api/invoices /api/invoices/1 /api/invoices/424242; do
        curl -s -o /dev/null -H "traceparent: 00-$trace-$span-01" "http://127.0.0.1:$APP_PORT$path"
        # And requests without a trace, or not sampled: no exemplars from these.
        curl -s -o /dev/null "http://127.0.0.1:$APP_PORT$path"
        curl -s -o /dev/null -H "traceparent: 00-$(printf 'f%.0s' $(seq 32))-$span-00" \
            "http://127.0.0.1:$APP_PORT$path"
    done
    n=$((n + 1))
    sleep 0.2
done
echo "$n sampled traces sent, $((n * 9)) requests"

step "through the HTTP API of both"
python3 - "http://127.0.0.1:$NATIVE_PORT" "http://127.0.0.1:$CLASSIC_PORT" "$TMP" "$ROOT/src/exporter.rs" \
    "$ROOT/monitoring/grafana/dashboards/service-overview.json" <<'PY'
import json, sys, time, urllib.parse, urllib.request
native, classic, tmp, exporter, dashboard = sys.argv[1:]
sent = {line.strip() for line in open(f"{tmp}/trace-ids") if line.strip()}

def api(prom, path, **params):
    url = f"{prom}/api/v1/{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"{path} {params}: {body}")
    return body["data"]

def until(what, check, seconds=30):
    deadline = time.time() + seconds
    while True:
        answer = check()
        if answer:
            return answer
        if time.time() > deadline:
            raise SystemExit(f"FAIL {what}: not within {seconds} s")
        time.sleep(1)

fails = []
def expect(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what)
    if not ok:
        fails.append(what)

# Native: rate() gives native histograms.
q = "rate(http_server_request_duration_seconds[1m])"
def native_rate():
    result = api(native, "query", query=q)["result"]
    return [r for r in result if "histogram" in r] or None
result = until(q, native_rate)
example = result[0]
print(f"  {q}: {len(result)} series with a histogram field, e.g.")
print("   ", json.dumps({"metric": example["metric"], "histogram": example["histogram"]})[:400])
expect(all("histogram" in r and "value" not in r for r in result), f"{q} returns native histograms only")

q = "histogram_quantile(0.99, sum(rate(http_server_request_duration_seconds[1m])))"
result = api(native, "query", query=q)["result"]
value = float(result[0]["value"][1]) if result else float("nan")
print(f"  {q} = {value}")
expect(len(result) == 1 and value == value and 0 < value < 128, f"{q} is a number of seconds")

q = "histogram_count(sum(rate(http_server_request_duration_seconds[1m])))"
result = api(native, "query", query=q)["result"]
print(f"  {q} = {result[0]['value'][1] if result else None}")
expect(bool(result) and float(result[0]["value"][1]) > 0, f"{q} is positive")

now = time.time()
def exemplars():
    data = api(native, "query_exemplars", query="http_server_request_duration_seconds",
               start=str(now - 300), end=str(time.time() + 60))
    ids = [e["labels"].get("trace_id") for s in data for e in s["exemplars"]]
    return ids or None
ids = until("query_exemplars", exemplars)
print(f"  /api/v1/query_exemplars: {len(ids)} exemplars, trace ids e.g. {sorted(set(ids))[:3]}")
expect(set(ids) <= sent, "every exemplar's trace_id is one the test sent (sampled)")
expect(len(set(ids)) >= 1, "at least one trace id sent comes back")

# Classic: the same Prometheus without the flags keeps the classic series.
q = "http_server_request_duration_seconds_bucket"
result = until(q + " (classic)", lambda: api(classic, "query", query=q)["result"] or None)
print(f"  without the flags, {q}: {len(result)} series")
expect(len(result) > 0, f"without the flags, {q} has series")
q = "rate(http_server_request_duration_seconds[1m])"
result = api(classic, "query", query=q)["result"]
expect(not any("histogram" in r for r in result), f"without the flags, {q} has no native histogram")
result = api(native, "query", query="http_server_request_duration_seconds_bucket")["result"]
expect(not result, "with the flags, the native histogram replaces the _bucket series (Prometheus 2.42 keeps one)")

# The Accept headers, as captured, are those the unit tests use.
source = open(exporter).read()
for kind in ("native", "classic"):
    accept = until(f"{kind} Prometheus scrapes the capture listener",
                   lambda: open(f"{tmp}/accept.{kind}").read() if __import__("os").path.exists(f"{tmp}/accept.{kind}") else None)
    print(f"  {kind} Prometheus sends Accept: {accept}")
    expect(f'"{accept}"' in source, f"the {kind} Accept header is in src/exporter.rs's unit tests")
expect("vnd.google.protobuf" in open(f"{tmp}/accept.native").read(), "with the flags, Prometheus asks for protobuf")
expect("vnd.google.protobuf" not in open(f"{tmp}/accept.classic").read(), "without them, it does not")

# The dashboard's native panels: `(native) or (classic)`. The native operand returns
# series from the Prometheus with native histograms, the whole query from both.
values = {"job": "invoicing", "instance": ".*", "route": ".*", "__rate_interval": "10s"}
def subst(expr):
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("$" + name, values[name])
    return expr
def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))
native_panels = [p for p in walk(json.load(open(dashboard))["panels"])
                 if p.get("title", "").endswith("(native)")]
expect(len(native_panels) >= 2, "the dashboard has native quantile and heatmap panels")
for p in native_panels:
    for t in p["targets"]:
        expr = subst(t["expr"])
        operand = expr.split(") or (")[0].lstrip("(")
        result = api(native, "query", query=operand)["result"]
        kind = "histogram" if any("histogram" in r for r in result) else "value"
        expect(len(result) > 0, f"{p['title']} [{t['refId']}] native: {len(result)} series ({kind}s) for {operand}")
        result = api(classic, "query", query=expr)["result"]
        expect(len(result) > 0, f"{p['title']} [{t['refId']}] without the flags (classic fallback): {len(result)} series")

targets = api(native, "targets")["activeTargets"] + api(classic, "targets")["activeTargets"]
for t in targets:
    expect(t["health"] == "up", f"target {t['scrapeUrl']} is up ({t.get('lastError') or 'no error'})")
if fails:
    raise SystemExit(f"{len(fails)} checks failed")
PY
echo
echo "native histograms and exemplars: all checks passed in $((SECONDS - BUILT)) s after the build"
