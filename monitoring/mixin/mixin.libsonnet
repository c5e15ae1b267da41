// The tower-prometheus monitoring mixin: Prometheus recording rules, alerts and Grafana
// dashboards for services instrumented with tower-prometheus, from one source.
//
//   local mixin = (import 'mixin/mixin.libsonnet') + { _config+:: { naming: 'promclient' } };
//   mixin.prometheusRules     {groups: [...]}  recording rules (SLO recording rules included)
//   mixin.prometheusAlerts    {groups: [...]}  alerts (SLO burn-rate alerts included)
//   mixin.grafanaDashboards   {'service-overview.json': {...}, ...}
//   mixin.ruleFiles           {'recording.rules.yml': {groups}, 'alerts.rules.yml': ...,
//                              'slo.rules.yml': ...}: the rules split as in prometheus/rules/
//
// monitoring/mixin/generate.sh writes the default configuration into
// prometheus/rules/ and grafana/dashboards/, and the PromClient one into promclient/.
//
// _config (defaults below):
//   naming: 'otel' | 'promclient'   the services' naming preset (Naming::OpenTelemetry,
//                                   the default, or Naming::PromClient): HTTP metric and
//                                   label names in every rule, alert and panel.
//   serviceName: 'invoicing'        the job the service alerts watch (TargetMissing,
//   serviceSelector: 'job="…"'      HighErrorRatio, the runtime and process alerts): the
//                                   matcher defaults to job="<serviceName>"; set it to
//                                   'job=~"a|b"' for several services.
//   defaultJob: 'invoicing'         the job the Service overview and Runtime dashboards
//                                   open on (their $job variable); null: the first job.
//   histograms: 'both'              'classic': the dashboards query the classic _bucket
//                                   series only (the native-histogram row is dropped);
//                                   'native': the classic-bucket latency row is dropped,
//                                   and the Summary's p99 and the slowest routes read the
//                                   native histogram first (the classic buckets after
//                                   `or`); 'both': both rows. The rules always read the
//                                   classic buckets.
//   showSlo: true                   the "Service level objectives" row of Service overview
//                                   (from the SLO recording rules).
//   showRpc: true                   the gRPC calls dashboard (rpc.json).
//   showInvoicing: true             the example app's business row on Service overview,
//                                   and its alert (PdpSubmissionsStuck).
//   uidSuffix: '', titleSuffix: ''  appended to every dashboard uid and title, so that the
//                                   dashboards of several configurations can be provisioned
//                                   together ('-promclient', ' (PromClient)').
//   runbookBase: '…/README.md'      where the alerts' runbook sections live (#alertname).
//   sloSelector: ''                 extra matchers on every SLO rule series (slo.libsonnet).
(import 'slo.libsonnet')
+ (import 'rules.libsonnet')
+ (import 'alerts.libsonnet')
+ (import 'dashboards.libsonnet')
+ {
  _config+:: {
    naming: 'otel',
    serviceName: 'invoicing',
    serviceSelector: 'job="%s"' % self.serviceName,
    defaultJob: 'invoicing',
    histograms: 'both',
    showSlo: true,
    showRpc: true,
    showInvoicing: true,
    uidSuffix: '',
    titleSuffix: '',
    runbookBase: 'https://github.com/tower-prometheus/tower-prometheus/blob/main/monitoring/README.md',
    sloSelector: '',
  },

  local isSlo(g) = std.startsWith(g.name, 'slo'),
  ruleFiles:: {
    'recording.rules.yml': { groups: [g for g in $.prometheusRules.groups if !isSlo(g)] },
    'alerts.rules.yml': { groups: [g for g in $.prometheusAlerts.groups if !isSlo(g)] },
    'slo.rules.yml': { groups: [g for g in $.prometheusRules.groups + $.prometheusAlerts.groups if isSlo(g)] },
  },
}
