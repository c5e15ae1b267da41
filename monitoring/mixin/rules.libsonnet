// Recording rules: request rate, 5xx ratio and latency quantiles per route and per job,
// event-loop lag p99 and worker busy ratio per instance. Level:metric:operations naming
// (https://prometheus.io/docs/practices/rules/). The record names follow the naming preset
// where they contain a metric name (job_route:<duration>:quantile_rate5m).
// Tests: prometheus/rules/recording.test.yml (hand-written for the OpenTelemetry names;
// tests.libsonnet renames them for the PromClient preset).
{
  local n = (import 'naming.libsonnet').presets[$._config.naming],

  // Requests per second per `by` (absent route label: requests that matched no route).
  local requests(by) =
    'sum by (%s) (rate(%s_count[5m]))' % [by, n.duration],

  // Share of requests answered with a 5xx per `by`. The `or 0 * …` branch makes the
  // ratio 0 instead of absent while a route has served no 5xx yet.
  local errorRatio(by) = |||
    (
        sum by (%(by)s) (rate(%(duration)s_count{%(status)s=~"5.."}[5m]))
      or
        0 * sum by (%(by)s) (rate(%(duration)s_count[5m]))
    )
    /
    sum by (%(by)s) (rate(%(duration)s_count[5m]))
  ||| % { by: by, duration: n.duration, status: n.status },

  // Latency quantile per route, aggregated over every replica (`le` kept for the quantile).
  local durationQuantile(q) = {
    record: 'job_route:%s:quantile_rate5m' % n.duration,
    expr: 'histogram_quantile(%s, sum by (job, %s, le) (rate(%s_bucket[5m])))' % [q, n.route, n.duration],
    labels: { quantile: q },
  },

  prometheusRules+:: {
    groups+: [
      {
        name: 'http-recording',
        rules: [
          { record: 'job_route:http_server_requests:rate5m', expr: requests('job, ' + n.route) },
          { record: 'job:http_server_requests:rate5m', expr: requests('job') },
          { record: 'job_route:http_server_request_errors:ratio_rate5m', expr: errorRatio('job, ' + n.route) },
          { record: 'job:http_server_request_errors:ratio_rate5m', expr: errorRatio('job') },
        ] + [durationQuantile(q) for q in ['0.5', '0.9', '0.99']],
      },
      {
        name: 'runtime-recording',
        rules: [
          {
            record: 'instance:tokio_event_loop_lag_seconds:quantile_rate5m',
            expr: 'histogram_quantile(0.99, sum by (job, instance, le) (rate(tokio_event_loop_lag_seconds_bucket[5m])))',
            labels: { quantile: '0.99' },
          },
          {
            // Share of the workers' time spent polling tasks (0–1).
            record: 'instance:tokio_worker_busy:ratio_rate5m',
            expr: 'rate(tokio_worker_busy_seconds_total[5m]) / on (job, instance) tokio_workers',
          },
        ],
      },
    ],
  },
}
