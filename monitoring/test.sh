#!/usr/bin/env bash
# Proves monitoring/ works without Docker and without Grafana, with the real Prometheus
# tools from Debian:
#   1. the tools are there (or the install command is printed);
#   2. promtool check config / check rules / test rules, docker-compose config,
#      amtool check-config, and the rules' annotations and runbook links;
#   3. end to end on 127.0.0.1: the invoicing app, a real prometheus scraping it with a
#      config generated from prometheus/prometheus.yml (targets rewritten, 1 s intervals,
#      the same rule files) and a real alertmanager; loadgen drives traffic; then, through
#      Prometheus's HTTP API: targets up, every dashboard variable and panel expression
#      returns series, every rule has health "ok", the app's objectives reach the SLO rules.
# Usage: monitoring/test.sh            (LOAD_SECONDS=20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
M="$ROOT/monitoring"
LOAD_SECONDS=${LOAD_SECONDS:-20}
START=$(date +%s)

step() { printf '\n--> %s\n' "$*"; }
die() { echo "monitoring/test.sh: $*" >&2; exit 1; }

step "tools"
missing=()
for tool in promtool prometheus amtool prometheus-alertmanager docker-compose python3 curl cargo; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    die "missing: ${missing[*]}. Install with: apt-get install -y prometheus prometheus-alertmanager docker-compose python3-yaml curl"
fi
python3 -c 'import yaml' 2>/dev/null || die "python3 has no yaml module. Install with: apt-get install -y python3-yaml"
promtool --version 2>&1 | head -n 1
amtool --version 2>&1 | head -n 1
docker-compose version --short

step "promtool check config"
promtool check config "$M/prometheus/prometheus.yml"

step "promtool check rules"
promtool check rules "$M"/prometheus/rules/*.rules.yml

step "promtool test rules"
promtool test rules "$M"/prometheus/rules/*.test.yml

step "the files generated from monitoring/mixin are up to date; the SLO rules tested in the PromClient preset too"
command -v jsonnet >/dev/null 2>&1 || die "missing: jsonnet. Install with: apt-get install -y jsonnet"
"$M/mixin/generate.sh" --check
PC=$(mktemp -d)
jsonnet -J "$M" -S -e 'local m = (import "mixin/slo.libsonnet") + {_config+:: {naming: "promclient"}}; std.manifestYamlDoc({groups: m.prometheusRules.groups + m.prometheusAlerts.groups})' > "$PC/slo.rules.yml"
jsonnet -J "$M" -S -e 'std.manifestYamlDoc((import "mixin/slo_tests.libsonnet")("promclient"))' > "$PC/slo.test.yml"
(cd "$PC" && promtool test rules slo.test.yml)
rm -rf "$PC"

step "docker-compose config -q"
docker-compose -f "$M/docker-compose.yml" config -q
echo "docker-compose.yml is valid"

step "amtool check-config"
amtool check-config "$M/alertmanager/alertmanager.yml"

step "alerts: annotations, runbook sections, a firing and a quiet test case each"
python3 - "$M" <<'PY'
import glob, re, sys, yaml
m = sys.argv[1]
readme = open(f"{m}/README.md").read()
# GitHub's heading anchors: lower-case, punctuation dropped, spaces to dashes.
anchors = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
           for h in re.findall(r"^#+ (.+)$", readme, re.M)}
alerts = {}
for f in sorted(glob.glob(f"{m}/prometheus/rules/*.rules.yml")):
    for g in yaml.safe_load(open(f))["groups"]:
        for r in g["rules"]:
            if "alert" in r:
                alerts[r["alert"]] = r
fires, quiet = set(), set()
for f in sorted(glob.glob(f"{m}/prometheus/rules/*.test.yml")):
    for t in yaml.safe_load(open(f)).get("tests", []):
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
errors = []
for name, r in alerts.items():
    ann = r.get("annotations", {})
    for key in ("summary", "description", "runbook"):
        if not ann.get(key):
            errors.append(f"{name}: no {key} annotation")
    anchor = ann.get("runbook", "").rpartition("#")[2]
    if "monitoring/README.md#" not in ann.get("runbook", "") or anchor not in anchors:
        errors.append(f"{name}: runbook {ann.get('runbook')!r} is not a section of monitoring/README.md")
    if r.get("labels", {}).get("severity") not in ("page", "ticket"):
        errors.append(f"{name}: severity must be page or ticket")
    if name not in fires:
        errors.append(f"{name}: no test case where it fires")
    if name not in quiet:
        errors.append(f"{name}: no test case where it stays quiet")
for e in errors:
    print("  FAIL", e)
if errors:
    sys.exit(1)
print(f"  {len(alerts)} alerts, each with summary, description, a runbook section, a firing and a quiet test case")
PY

step "end to end on 127.0.0.1: build the app and loadgen"
cargo build --quiet -p invoicing -p pdp --bins
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/debug"

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Bounded wait: SIGKILL what is still there after 5 s.
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
PDP_PORT=$(free_port)
PROM_PORT=$(free_port)
AM_PORT=$(free_port)
mkdir -p "$TMP/data"

step "start the PDP on 127.0.0.1:$PDP_PORT"
PDP_BIND=127.0.0.1:$PDP_PORT PDP_STEP=20 "$BIN/pdp" >"$TMP/pdp.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PDP_PORT/metrics" "the PDP" 30

step "start the invoicing app on 127.0.0.1:$APP_PORT, submitting to the PDP"
PDP_ADDR=127.0.0.1:$PDP_PORT BIND=127.0.0.1 PORT=$APP_PORT DATABASE_URL="sqlite://$TMP/data/invoicing.db" \
    UPLOADS_DIR="$TMP/data/uploads" PDF_DIR="$TMP/data/pdf-a3" RUST_LOG=warn \
    "$BIN/invoicing" >"$TMP/app.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$APP_PORT/health" "the app" 30

step "start alertmanager on 127.0.0.1:$AM_PORT"
prometheus-alertmanager --config.file="$M/alertmanager/alertmanager.yml" \
    --storage.path="$TMP/alertmanager" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= >"$TMP/alertmanager.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$AM_PORT/-/ready" "alertmanager" 30

step "generate prometheus.yml from the shipped one"
python3 - "$M/prometheus/prometheus.yml" "$TMP/prometheus.yml" "$APP_PORT" "$PROM_PORT" "$AM_PORT" "$PDP_PORT" <<'PY'
import os, sys, yaml
src, dst, app, prom, am, pdp = sys.argv[1:]
c = yaml.safe_load(open(src))
c["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
base = os.path.dirname(src)
c["rule_files"] = [os.path.join(base, f) for f in c["rule_files"]]
c["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"127.0.0.1:{am}"]}]}]
targets = {"prometheus": f"127.0.0.1:{prom}", "invoicing": f"127.0.0.1:{app}", "pdp": f"127.0.0.1:{pdp}"}
for s in c["scrape_configs"]:
    job = s["job_name"]
    if job not in targets:
        sys.exit(f"monitoring/test.sh knows no test target for job {job!r}: add it")
    for k in [k for k in s if k.endswith("_sd_configs") or k == "static_configs"]:
        del s[k]
    s["static_configs"] = [{"targets": [targets[job]]}]
yaml.safe_dump(c, open(dst, "w"), sort_keys=False)
PY
promtool check config "$TMP/prometheus.yml" >/dev/null
echo "rule files: $(python3 -c 'import sys, yaml; print(" ".join(yaml.safe_load(open(sys.argv[1]))["rule_files"]))' "$TMP/prometheus.yml")"

step "start prometheus on 127.0.0.1:$PROM_PORT"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PROM_PORT/-/ready" "prometheus" 60

step "loadgen for ${LOAD_SECONDS}s"
timeout $((LOAD_SECONDS + 30)) "$BIN/loadgen" --url "http://127.0.0.1:$APP_PORT" \
    --duration "${LOAD_SECONDS}s" --rate 100 >"$TMP/loadgen.log" 2>&1
tail -n 5 "$TMP/loadgen.log"

step "issue invoices the PDP refuses as duplicates (two sellers, one SIRET)"
api() { curl -fsS -H 'content-type: application/json' -d "$2" "http://127.0.0.1:$APP_PORT$1"; }
client=$(api /api/clients '{"name": "PDP client"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for n in 1 2; do
    seller=$(api /api/sellers '{"name": "PDP seller '$n'", "siret": "73282932000074", "city": "Paris"}' \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    api /api/invoices '{"seller_id": '$seller', "client_id": '$client', "number": "PDP-1", "issue_date": "2026-12-01", "status": "issued", "lines": [{"description": "x", "quantity": 1, "unit_price_cents": 100, "vat_rate": 20}]}' \
        | python3 -c 'import json,sys; print("  pdp_status:", json.load(sys.stdin)["pdp_status"])'
done
echo "  the PDP's /metrics:"
curl -fsS "http://127.0.0.1:$PDP_PORT/metrics" | grep '^rpc_server_call_duration_seconds_count' | sed 's/^/    /'
echo "  the app's calls:"
curl -fsS "http://127.0.0.1:$APP_PORT/metrics" | grep '^rpc_client_call_duration_seconds_count' | sed 's/^/    /'
# Two more scrapes and rule evaluations after the last request.
sleep 3

step "through Prometheus's HTTP API"
python3 - "$M" "http://127.0.0.1:$PROM_PORT" "127.0.0.1:$APP_PORT" "127.0.0.1:$PDP_PORT" <<'PY'
import glob, json, os, re, sys, urllib.parse, urllib.request
m, prom, app_instance, pdp_instance = sys.argv[1:]
instances = {"invoicing": app_instance, "pdp": pdp_instance}

def api(path, **params):
    url = f"{prom}/api/v1/{path}"
    data = urllib.parse.urlencode(params, doseq=True).encode() if params else None
    with urllib.request.urlopen(url, data=data, timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"{path} {params}: {body}")
    return body["data"]

failures = []

# Targets.
for t in api("targets")["activeTargets"]:
    job, health = t["labels"]["job"], t["health"]
    print(f"  target {job:<11} {t['labels']['instance']:<16} {health}")
    if health != "up":
        failures.append(f"target {job} is {health}: {t.get('lastError')}")
jobs = {t["labels"]["job"] for t in api("targets")["activeTargets"]}
for job in ("invoicing", "pdp"):
    if job not in jobs:
        failures.append(f"no {job} target")
up = api("query", query='up{job="invoicing"} == 1')["result"]
if len(up) != 1:
    failures.append(f'up{{job="invoicing"}} == 1 returned {len(up)} series')
if not api("alertmanagers")["activeAlertmanagers"]:
    failures.append("prometheus has no active alertmanager")

# Dashboards: variables, then every panel expression with the variables substituted.
def subst(expr, values):
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr

fixed = {"__rate_interval": "10s", "__interval": "1s", "__range": "1m"}
for path in sorted(glob.glob(f"{m}/grafana/dashboards/*.json")):
    d = json.load(open(path))
    print(f"\n  dashboard {d['title']!r} ({os.path.basename(path)})")
    values = dict(fixed)
    for v in d["templating"]["list"]:
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        mt = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", subst(q, values))
        if not mt:
            failures.append(f"{d['title']}: variable {v['name']} is not label_values(selector, label): {q}")
            continue
        selector, label = mt.groups()
        found = sorted({s.get(label) for s in api("series", **{"match[]": selector}) if s.get(label)})
        print(f"    variable ${v['name']:<9} {len(found)} values  {found[:6]}")
        if not found:
            failures.append(f"{d['title']}: variable {v['name']} has no value ({q})")
        # The job the test scrapes that the variable offers (the app, or the PDP on the
        # gRPC dashboard), and its instance.
        job = "invoicing" if "invoicing" in found or v["name"] != "job" else "pdp"
        wanted = {"job": job, "instance": instances.get(values.get("job"))}.get(v["name"])
        if wanted is not None and wanted not in found:
            failures.append(f"{d['title']}: variable {v['name']} does not offer {wanted}")
        # job and instance get the values the test scrapes; the others (route) "All".
        values[v["name"]] = wanted or (v.get("allValue", ".*") if v.get("includeAll") else found[0])

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(d["panels"]):
        for t in p.get("targets", []):
            expr = subst(t["expr"], values)
            if "$" in expr:
                failures.append(f"{p['title']}: unsubstituted variable in {expr}")
                continue
            result = api("query", query=expr)["result"]
            n = len(result)
            ref = f" [{t['refId']}]" if len(p["targets"]) > 1 else ""
            print(f"    {n:>3} series  {p['title']}{ref}")
            if n == 0:
                failures.append(f"{d['title']} / {p['title']}{ref}: no series for {expr}")

# Rules.
groups = api("rules")["groups"]
n = 0
print()
for g in groups:
    for r in g["rules"]:
        n += 1
        if r["health"] != "ok":
            failures.append(f"rule {r.get('name')} in {g['name']}: health {r['health']} {r.get('lastError', '')}")
    print(f"  rule group {g['name']:<18} {len(g['rules']):>2} rules, health: {', '.join(sorted({r['health'] for r in g['rules']}))}")
if n == 0:
    failures.append("prometheus loaded no rule")
# The objectives the app declares (examples/invoicing/src/telemetry.rs, OBJECTIVES),
# through the generic SLO rules: one budget per declared objective, and error ratios for
# the declared objectives of the routes loadgen drives, none for the others.
print()
budgets = api("query", query='job_route:slo_error_budget:ratio{job="invoicing"}')["result"]
declared = sorted((s["metric"]["http_route"], s["metric"]["objective"], round(float(s["value"][1]), 6)) for s in budgets)
for route, objective, budget in declared:
    print(f"  objective {route:<32} {objective:<13} budget {budget}")
if len(declared) != 7:
    failures.append(f"expected the app's 7 objectives, the rules see {len(declared)}: {declared}")
ratios = api("query", query='job_route:slo_errors:ratio_rate5m{job="invoicing"}')["result"]
measured = sorted((s["metric"]["http_route"], s["metric"]["objective"]) for s in ratios)
for route, objective in measured:
    value = next(float(s["value"][1]) for s in ratios if (s["metric"]["http_route"], s["metric"]["objective"]) == (route, objective))
    print(f"  bad ratio 5m {route:<29} {objective:<13} {value:.4f}")
for wanted in [("/api/invoices", "availability"), ("/api/invoices", "latency"), ("/api/invoices/{id}", "latency")]:
    if wanted not in measured:
        failures.append(f"no job_route:slo_errors:ratio_rate5m for {wanted}: {measured}")
undeclared = [m for m in measured if (m[0], m[1]) not in {(r, o) for r, o, _ in declared}]
if undeclared:
    failures.append(f"error ratios for routes without an objective: {undeclared}")
firing = sorted({a["labels"]["alertname"] for a in api("alerts")["alerts"] if a["state"] == "firing"})
print(f"  {n} rules evaluated; alerts firing now: {', '.join(firing) or 'none'}")

if failures:
    print()
    for f in failures:
        print("  FAIL", f)
    sys.exit(1)
PY

echo
echo "monitoring/test.sh: all checks passed in $(($(date +%s) - START)) s"
