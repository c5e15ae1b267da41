// Alerts (the SLO burn-rate alerts are in slo.libsonnet). Severities: `page` (users are
// hurt now: wake someone up) and `ticket` (look at it in working hours). Every alert
// links to its runbook section, `runbookBase` + '#' + the alert's name in lower case.
// Thresholds are starting points for the example app: tune them to your service and limits.
// The alerts that name the service use `serviceSelector` (default job="invoicing") and
// `serviceName`; TargetDown and GrpcServerErrorRatioHigh watch every job.
// Tests: prometheus/rules/alerts.test.yml (hand-written for the OpenTelemetry names;
// tests.libsonnet renames them for the PromClient preset).
{
  local c = $._config,
  local n = (import 'naming.libsonnet').presets[c.naming],
  local job = c.serviceSelector,

  local alert(name, expr, severity, summary, description, forDuration=null) = {
    alert: name,
    expr: expr,
    [if forDuration != null then 'for']: forDuration,
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: description,
      runbook: c.runbookBase + '#' + std.asciiLower(name),
    },
  },

  // `metric` predicted to cross `limit` within 6 hours at the slope of the last hour; not
  // in the first hour after a start (caches warming up).
  local growing(metric, limit) = |||
    predict_linear(%(metric)s{%(job)s}[1h], 6 * 3600) > %(limit)s
    and on (job, instance)
    (time() - process_start_time_seconds{%(job)s}) > 3600
  ||| % { metric: metric, limit: limit, job: job },

  // `a / b` per instance above `threshold`.
  local perInstanceRatio(a, b, threshold) = |||
    %(a)s
    / on (job, instance)
    %(b)s > %(threshold)s
  ||| % { a: a, b: b, threshold: threshold },

  local grpcCalls(extra='') =
    'sum by (job, rpc_method) (rate(rpc_server_call_duration_seconds_count%s[5m]))' % extra,

  local mib512 = '512 * 1024 * 1024',
  local mib256 = '256 * 1024 * 1024',

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'availability',
        rules: [
          alert(
            'TargetDown', 'up == 0', 'page',
            '{{ $labels.job }} target {{ $labels.instance }} is down',
            'Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for more than 1 minute.',
            '1m',
          ),
          alert(
            'TargetMissing', 'absent(up{%s})' % job, 'page',
            'No %s target is discovered' % c.serviceName,
            'Service discovery has found no %(s)s replica for 5 minutes: nothing is scraped, so no other %(s)s alert can fire.' % { s: c.serviceName },
            '5m',
          ),
          // Minimum-traffic guard: at least 1 request per second, so that 1 error out of 3
          // requests at night does not page anyone.
          alert(
            'HighErrorRatio',
            |||
              job:http_server_request_errors:ratio_rate5m{%(job)s} > 0.05
              and on (job)
              job:http_server_requests:rate5m{%(job)s} > 1
            ||| % { job: job },
            'page',
            '{{ $labels.job }} answers {{ $value | humanizePercentage }} of requests with a 5xx',
            'More than 5% of the requests to {{ $labels.job }} have failed with a 5xx status over the last 5 minutes, for 5 minutes, with at least 1 request per second.',
            '5m',
          ),
          alert(
            'HighLatencyP99',
            |||
              job_route:%(duration)s:quantile_rate5m{%(job)s, quantile="0.99"} > 0.5
              and on (job, %(route)s)
              job_route:http_server_requests:rate5m{%(job)s} > 0.1
            ||| % { job: job, duration: n.duration, route: n.route },
            'ticket',
            'p99 latency of {{ $labels.%s }} is {{ $value | humanizeDuration }}' % n.route,
            'The 99th percentile of the request duration of route {{ $labels.%s }} ({{ $labels.job }}) has been above 500ms for 10 minutes, with at least 0.1 request per second.' % n.route,
            '10m',
          ),
        ],
      },
      {
        name: 'runtime',
        rules: [
          alert(
            'EventLoopLagHigh',
            'instance:tokio_event_loop_lag_seconds:quantile_rate5m{%s, quantile="0.99"} > 0.05' % job,
            'ticket',
            'Event-loop lag p99 of {{ $labels.instance }} is {{ $value | humanizeDuration }}',
            'Ready tasks of {{ $labels.instance }} wait more than 50ms (p99) before a worker polls them, for 10 minutes: something blocks the Tokio workers.',
            '10m',
          ),
          alert(
            'RuntimeSaturated', 'tokio_global_queue_depth{%s} > 10' % job, 'ticket',
            'Tokio runtime of {{ $labels.instance }} is saturated ({{ $value }} tasks queued)',
            'More than 10 tasks have been waiting in the global queue of {{ $labels.instance }} at every evaluation for 5 minutes: the workers cannot keep up.',
            '5m',
          ),
        ],
      },
      {
        name: 'process',
        rules: [
          // CPU seconds per second per Tokio worker: the runtime starts one worker per core.
          alert(
            'CpuHigh',
            perInstanceRatio('rate(process_cpu_seconds_total{%s}[5m])' % job, 'tokio_workers{%s}' % job, '0.8'),
            'ticket',
            '{{ $labels.instance }} uses {{ $value | humanizePercentage }} of its cores',
            '{{ $labels.instance }} has used more than 80% of the CPU its Tokio workers can use for 15 minutes.',
            '15m',
          ),
          alert(
            'MemoryHigh', 'process_resident_memory_bytes{%s} > %s' % [job, mib512], 'ticket',
            '{{ $labels.instance }} has {{ $value | humanize1024 }}B resident',
            'The resident memory of {{ $labels.instance }} has been above 512 MiB for 10 minutes.',
            '10m',
          ),
          alert(
            'MemoryGrowing', growing('process_resident_memory_bytes', mib512), 'ticket',
            'Resident memory of {{ $labels.instance }} keeps growing',
            'At the slope of the last hour, the resident memory of {{ $labels.instance }} reaches 512 MiB within 6 hours (predicted {{ $value | humanize1024 }}B).',
            '30m',
          ),
          alert(
            'HeapHigh', 'rust_heap_live_bytes{%s} > %s' % [job, mib256], 'ticket',
            '{{ $labels.instance }} has {{ $value | humanize1024 }}B of live heap',
            'The live heap (allocated and not freed) of {{ $labels.instance }} has been above 256 MiB for 10 minutes.',
            '10m',
          ),
          alert(
            'HeapGrowing', growing('rust_heap_live_bytes', mib256), 'ticket',
            'Live heap of {{ $labels.instance }} keeps growing',
            'At the slope of the last hour, the live heap of {{ $labels.instance }} reaches 256 MiB within 6 hours (predicted {{ $value | humanize1024 }}B): a leak, or a cache without a bound.',
            '30m',
          ),
          alert(
            'FdsNearLimit',
            perInstanceRatio('process_open_fds{%s}' % job, 'process_max_fds{%s}' % job, '0.8'),
            'ticket',
            '{{ $labels.instance }} uses {{ $value | humanizePercentage }} of its file descriptors',
            '{{ $labels.instance }} has had more than 80% of its open-file limit in use for 5 minutes; at 100% it cannot accept connections nor open files.',
            '5m',
          ),
          alert(
            'ProcessRestarted', 'changes(process_start_time_seconds{%s}[15m]) > 0' % job, 'ticket',
            '{{ $labels.instance }} restarted',
            'The process behind {{ $labels.instance }} has started {{ $value }} time(s) again in the last 15 minutes.',
          ),
        ],
      },
      // Connections (Metrics::listener). The listener labels (server_address,
      // server_port) tell the service's port from its metrics port.
      {
        name: 'connections',
        rules: [
          // Any failed accept but a client that left before it: the process (or the
          // system) ran out of descriptors or memory, and new connections wait in the
          // listen backlog until the accept loop gets them.
          alert(
            'ConnectionAcceptErrors',
            |||
              sum by (job, instance, server_address, server_port, error_type) (
                increase(%(errors)s{%(job)s, error_type!="connection_aborted"}[5m])
              ) > 0
            ||| % { job: job, errors: n.acceptErrors },
            'page',
            '{{ $labels.instance }} fails to accept connections ({{ $labels.error_type }})',
            'Accepts on {{ $labels.server_address }}:{{ $labels.server_port }} of {{ $labels.instance }} have failed with {{ $labels.error_type }} in the last 5 minutes (fd_limit: too many open files): clients wait or time out while the server cannot take their connections.',
          ),
          alert(
            'ConnectionsNearLimit',
            |||
              sum by (job, instance, server_address, server_port) (%(open)s{%(job)s})
              / sum by (job, instance, server_address, server_port) (%(limit)s{%(job)s})
              > 0.9
            ||| % { job: job, open: n.openConnections, limit: n.connectionLimit },
            'ticket',
            '{{ $labels.instance }} has {{ $value | humanizePercentage }} of its connections open',
            'The listener {{ $labels.server_address }}:{{ $labels.server_port }} of {{ $labels.instance }} has had more than 90% of its max_connections open for 5 minutes; at 100% it turns new connections away.',
            '5m',
          ),
        ],
      },
      {
        name: 'task-metrics',
        rules: [
          // Slow-poll time of one route per second of wall time: the share of one Tokio
          // worker its handlers held in polls longer than the slow-poll threshold, while
          // every other task on that worker waited. 0.1: a tenth of a worker, for 10
          // minutes. Needs the layer's task monitors (feature task-metrics,
          // task_monitors(true)).
          alert(
            'RouteBlocksRuntime',
            |||
              sum by (job, instance, %(route)s) (
                rate(tokio_task_slow_poll_seconds_total{%(job)s}[5m])
              ) > 0.1
            ||| % { job: job, route: n.route },
            'ticket',
            '{{ $labels.%s }} blocks the Tokio workers of {{ $labels.instance }}' % n.route,
            'Slow polls of {{ $labels.%s }} have held {{ $value | humanizePercentage }} of a worker thread of {{ $labels.instance }} for 10 minutes: its handler does CPU work or a blocking call inside a poll, and every task on that worker waits meanwhile.' % n.route,
            '10m',
          ),
        ],
      },
    ] + (if c.showInvoicing then [
      // The example app's submissions to the PDP (its outbox, examples/invoicing/src/outbox.rs):
      // the queue time of the oldest one not answered yet, so that a busy outbox that
      // drains does not fire, and one the PDP leaves unanswered does, however few.
      {
        name: 'invoicing',
        rules: [
          alert(
            'PdpSubmissionsStuck',
            |||
              time() - invoicing_pdp_submissions_oldest_pending_timestamp_seconds{%(job)s} > 600
              and
              invoicing_pdp_submissions_oldest_pending_timestamp_seconds{%(job)s} > 0
            ||| % { job: job },
            'ticket',
            'An issued invoice has waited {{ $value | humanizeDuration }} for the PDP ({{ $labels.instance }})',
            'The oldest PDP submission not answered yet, in the database of {{ $labels.instance }}, was queued more than 10 minutes ago, for 5 minutes: issued invoices are not reaching the PDP. The app keeps retrying them.',
            '5m',
          ),
        ],
      },
    ] else []) + [
      // gRPC servers instrumented with tower-prometheus (the PDP of examples/pdp):
      // rpc_server_call_duration_seconds, OpenTelemetry RPC conventions in both presets.
      // Calls with an error_type are the server's failures (UNKNOWN, DEADLINE_EXCEEDED,
      // UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, panics); client errors such as
      // INVALID_ARGUMENT or ALREADY_EXISTS and cancelled calls (calls the client reset
      // mid-request included) have none. UNIMPLEMENTED on rpc_method="_OTHER" is a
      // client calling a method the server does not have, which any client can do at
      // will: it does not count. The two selectors of the errors are disjoint by
      // rpc_method, so `or` adds them.
      {
        name: 'grpc',
        rules: [
          alert(
            'GrpcServerErrorRatioHigh',
            |||
              (
                %(errors)s
                /
                %(all)s
              ) > 0.05
              and
              %(all)s > 0.05
            ||| % {
              errors: '(%s or %s)' % [
                grpcCalls('{error_type!="", rpc_method!="_OTHER"}'),
                grpcCalls('{error_type!="", error_type!="UNIMPLEMENTED", rpc_method="_OTHER"}'),
              ],
              all: grpcCalls(),
            },
            'page',
            '{{ $labels.job }}: {{ $value | humanizePercentage }} of {{ $labels.rpc_method }} calls fail',
            'For 5 minutes, more than 5% of the gRPC calls to {{ $labels.rpc_method }} served by {{ $labels.job }} have ended with a server error (see rpc_response_status_code on the gRPC calls dashboard).',
            '5m',
          ),
        ],
      },
    ],
  },
}
