#!/usr/bin/env bash
# Writes the monitoring files generated from monitoring/mixin (today: the generic SLO rules
# and their rule tests, for the default naming preset) into monitoring/prometheus/rules/.
# Usage: monitoring/mixin/generate.sh          regenerate the committed files
#        monitoring/mixin/generate.sh --check  fail, with the diff, when they differ
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jsonnet >/dev/null 2>&1 || { echo "jsonnet is missing. Install with: apt-get install -y jsonnet" >&2; exit 1; }
out=prometheus/rules
if [ "${1:-}" = "--check" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
yaml='std.manifestYamlDoc(%s, indent_array_in_object=true, quote_keys=false)'
jsonnet -J . -S -e "\"# Generated from monitoring/mixin/slo.libsonnet: do not edit.\n\" + $(printf "$yaml" 'local m = (import "mixin/slo.libsonnet"); {groups: m.prometheusRules.groups + m.prometheusAlerts.groups}')" > "$out/slo.rules.yml"
jsonnet -J . -S -e "\"# Generated from monitoring/mixin/slo_tests.libsonnet: do not edit.\n\" + $(printf "$yaml" '(import "mixin/slo_tests.libsonnet")()')" > "$out/slo.test.yml"
if [ "${1:-}" = "--check" ]; then
    for f in slo.rules.yml slo.test.yml; do
        diff -u "prometheus/rules/$f" "$out/$f" || { echo "monitoring/prometheus/rules/$f differs from monitoring/mixin: run monitoring/mixin/generate.sh" >&2; exit 1; }
    done
    echo "generated files match monitoring/mixin"
fi
