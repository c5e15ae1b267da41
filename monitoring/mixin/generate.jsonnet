// Every file generate.sh writes, as {path relative to monitoring/: content}:
//   prometheus/rules/{recording,alerts,slo}.rules.yml, prometheus/rules/slo.test.yml and
//   grafana/dashboards/*.json: the mixin with its default _config (OpenTelemetry names);
//   promclient/rules/*.rules.yml, promclient/rules/*.test.yml (every rule test, the hand-written ones renamed)
//   and promclient/dashboards/*.json: the PromClient preset, with uids and titles
//   suffixed so that both sets of dashboards can be provisioned together.
// part (a top-level argument): 'rules', the YAML files as text (jsonnet -S -m), or
// 'dashboards', the dashboards as JSON values that jsonnet -m writes itself (its own
// writer is 20 times faster than std.manifestJsonEx), or 'all' (the file names).
local grafana = import 'grafana.libsonnet';
local mixin = import 'mixin.libsonnet';
local sloTests = import 'slo_tests.libsonnet';
local tests = import 'tests.libsonnet';

local variants = {
  '': { config: {}, rules: 'prometheus/rules/', dashboards: 'grafana/dashboards/' },
  promclient: {
    config: {
      naming: 'promclient',
      uidSuffix: '-promclient',
      titleSuffix: ' (PromClient)',
      // gRPC metrics are the same in both presets: rpc.json serves both.
      showRpc: false,
    },
    rules: 'promclient/rules/',
    dashboards: 'promclient/dashboards/',
  },
};

// `jsonnet -S -m` ends every file with a newline of its own.
local chomp(s) = if std.endsWith(s, '\n') then std.substr(s, 0, std.length(s) - 1) else s;

local yaml(header, v) =
  '# Generated from monitoring/mixin (%s): do not edit, run monitoring/mixin/generate.sh.\n' % header
  + (import 'yaml.libsonnet')(v);

local files(name, variant, part) =
  local m = mixin { _config+:: variant.config };
  local naming = m._config.naming;
  local label = 'naming "%s"' % naming;
  local rules = {
    [variant.rules + f]: yaml(label, m.ruleFiles[f])
    for f in std.objectFields(m.ruleFiles)
  } + {
    [variant.rules + 'slo.test.yml']: yaml('slo_tests.libsonnet, ' + label, sloTests(naming)),
  } + (
    // The hand-written tests of the default preset stay where they are written.
    if naming == 'otel' then {} else {
      [variant.rules + f]: '# Generated from monitoring/mixin (tests.libsonnet, %s, from prometheus/rules/%s): do not edit, run monitoring/mixin/generate.sh.\n' % [label, f]
                           + chomp(tests(naming)[f])
      for f in std.objectFields(tests(naming))
    }
  );
  local dashboards = {
    [variant.dashboards + f]: grafana.numbers(m.grafanaDashboards[f])
    for f in std.objectFields(m.grafanaDashboards)
  };
  { rules: rules, dashboards: dashboards, all: rules + dashboards }[part];

function(part='all')
  std.foldl(function(acc, name) acc + files(name, variants[name], part), std.objectFields(variants), {})
