// The generic SLO rule set: error ratios and multi-window, multi-burn-rate alerts for every
// objective that any service declares with `HttpMetricsBuilder::objective` (the series
// `http_server_objective_ratio{http_route, objective, threshold}`, value = the target).
// Nothing here names a service or a route: a route without an objective produces nothing.
//
// Windows and burn rates: Google SRE workbook, "Alerting on SLOs", table 5-8 (a 30-day
// budget): page at 14.4x over 1h and 5m or 6x over 6h and 30m; ticket at 3x over 1d and
// 2h or 1x over 3d and 6h.
//
// _config fields used (with their defaults):
//   naming: 'otel' | 'promclient'   the tower-prometheus naming preset of the services.
//   sloSelector: ''                 extra matchers on every series, e.g. 'cluster="eu"'.
//   runbookBase: '...README.md'     where the runbook sections live.
{
  _config+:: {
    naming: 'otel',
    sloSelector: '',
    runbookBase: 'https://github.com/tower-prometheus/tower-prometheus/blob/main/monitoring/README.md',
  },

  local n = (import 'naming.libsonnet').presets[$._config.naming],
  // `{a="b", <sloSelector>}` with the extra matchers only when there are some.
  local sel(matchers) =
    local all = std.filter(function(m) m != '', matchers + [$._config.sloSelector]);
    if std.length(all) == 0 then '' else '{' + std.join(', ', all) + '}',
  local by = 'job, %s' % n.route,
  local windows = ['5m', '30m', '1h', '2h', '6h', '1d', '3d'],

  local availability(w) = {
    record: 'job_route:slo_errors:ratio_rate' + w,
    expr: |||
      (
          sum by (%(by)s) (rate(%(duration)s_count%(errors)s[%(w)s]))
        or
          0 * sum by (%(by)s) (rate(%(duration)s_count%(all)s[%(w)s]))
      )
      /
      sum by (%(by)s) (rate(%(duration)s_count%(all)s[%(w)s]))
      and on (%(by)s)
      %(objective)s%(kind)s
    ||| % {
      by: by,
      w: w,
      duration: n.duration,
      objective: n.objective,
      errors: sel(['%s=~"5.."' % n.status]),
      all: sel([]),
      kind: sel(['objective="availability"']),
    },
    labels: { objective: 'availability' },
  },

  // The bucket of the threshold: `threshold` copied to `le`, in both spellings of an
  // integer bound ("1.0" from OpenMetrics, protobuf and Prometheus 3; "1" from text 0.0.4).
  local latency(w) = {
    record: 'job_route:slo_errors:ratio_rate' + w,
    expr: |||
      1 - (
        sum by (%(by)s) (
            rate(%(duration)s_bucket%(all)s[%(w)s])
          and on (job, instance, %(route)s, le)
            (
                label_replace(%(objective)s%(kind)s, "le", "$1", "threshold", "(.*)")
              or
                label_replace(%(objective)s%(kind)s, "le", "$1", "threshold", "([0-9]+)\\.0")
            )
        )
        /
        sum by (%(by)s) (rate(%(duration)s_count%(all)s[%(w)s]))
      )
    ||| % {
      by: by,
      w: w,
      route: n.route,
      duration: n.duration,
      objective: n.objective,
      all: sel([]),
      kind: sel(['objective="latency"']),
    },
    labels: { objective: 'latency' },
  },

  local burn(long, short, factor) = |||
    (
        job_route:slo_errors:ratio_rate%(long)s > on (%(by)s, objective) (%(factor)s * job_route:slo_error_budget:ratio)
      and on (%(by)s, objective)
        job_route:slo_errors:ratio_rate%(short)s > on (%(by)s, objective) (%(factor)s * job_route:slo_error_budget:ratio)
    )
  ||| % { long: long, short: short, factor: factor, by: by },

  prometheusRules+:: {
    groups+: [
      {
        name: 'slo-recording',
        rules: [
          {
            // What remains to burn: 1 - target, per job, route and objective (the
            // replicas of a job declare the same objectives; max picks one).
            record: 'job_route:slo_error_budget:ratio',
            expr: '1 - max by (%s, objective) (%s%s)' % [by, n.objective, sel([])],
          },
        ] + std.flattenArrays([[availability(w), latency(w)] for w in windows]),
      },
    ],
  },

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'slo',
        rules: [
          {
            alert: 'ErrorBudgetBurnFast',
            expr: burn('1h', '5m', '14.4') + 'or\n' + burn('6h', '30m', '6'),
            'for': '2m',
            labels: { severity: 'page' },
            annotations: {
              summary: '{{ $labels.job }} {{ $labels.%s }} burns its %s error budget fast' % [n.route, '{{ $labels.objective }}'],
              description: 'The {{ $labels.objective }} objective of {{ $labels.%s }} ({{ $labels.job }}) has {{ $value | humanizePercentage }} of bad requests over the long window: at 14.4x (1h and 5m) or 6x (6h and 30m) its error budget, the 30-day budget is gone in less than 5 days.' % n.route,
              runbook: $._config.runbookBase + '#errorbudgetburnfast',
            },
          },
          {
            alert: 'ErrorBudgetBurnSlow',
            expr: burn('1d', '2h', '3') + 'or\n' + burn('3d', '6h', '1'),
            'for': '1h',
            labels: { severity: 'ticket' },
            annotations: {
              summary: '{{ $labels.job }} {{ $labels.%s }} burns its %s error budget steadily' % [n.route, '{{ $labels.objective }}'],
              description: 'The {{ $labels.objective }} objective of {{ $labels.%s }} ({{ $labels.job }}) has {{ $value | humanizePercentage }} of bad requests over the long window: at 3x (1d and 2h) or 1x (3d and 6h) its error budget, the 30-day budget runs out before it is earned back.' % n.route,
              runbook: $._config.runbookBase + '#errorbudgetburnslow',
            },
          },
        ],
      },
    ],
  },
}
