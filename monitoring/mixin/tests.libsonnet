// The rule tests of recording.rules.yml and alerts.rules.yml for a naming preset:
// (import 'tests.libsonnet')(naming) is {file name: the test file's text}. The tests are
// written once, by hand, for the OpenTelemetry names (prometheus/rules/*.test.yml); for
// PromClient every metric and label name in them is renamed (naming.libsonnet's table),
// in the text: std.parseYaml of jsonnet 0.18 is lossy (a quoted "0.99" label value comes
// back a number, '0x300' unquoted).
function(naming='otel')
  local rename = (import 'naming.libsonnet').rename;
  {
    'recording.test.yml': rename(naming, importstr '../prometheus/rules/recording.test.yml'),
    'alerts.test.yml': rename(naming, importstr '../prometheus/rules/alerts.test.yml'),
  }
