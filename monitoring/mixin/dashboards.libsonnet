// The Grafana dashboards: Service overview (RED per route, connections, latency from
// classic and/or native histograms, the service level objectives, sizes, the example
// app's business row),
// Runtime (Tokio, process, heap) and gRPC calls. Panel ids are fixed: links to a panel
// (viewPanel=N) survive a regeneration and a panel left out by the _config.
//
// _config fields used: naming, defaultJob, histograms, showSlo, showRpc, showInvoicing,
// uidSuffix and titleSuffix (mixin.libsonnet documents them).
local g = import 'grafana.libsonnet';
local presets = (import 'naming.libsonnet').presets;

{
  assert std.member(['classic', 'native', 'both'], $._config.histograms) :
         "_config.histograms is 'classic', 'native' or 'both', not '%s'" % $._config.histograms,
  local c = $._config,
  local n = presets[c.naming],
  local t = g.target,

  local replicas = 'job=~"$job", instance=~"$instance"',
  local routes = '%s, %s=~"$route"' % [replicas, n.route],

  local sumBy(by) = if by == '' then 'sum' else 'sum by (%s) ' % by,
  // Requests per second of the selected routes, `by` (a label list) or all together.
  local requests(by='', matchers='') =
    local selector = routes + (if matchers == '' then '' else ', ' + matchers);
    sumBy(by) + '(rate(%s_count{%s}[$__rate_interval]))' % [n.duration, selector],
  // The quantile q of a classic histogram's `_bucket` series, summed by `by` (`le`
  // included, in the order given); `selector`: the matchers, '' for none.
  local bucketQuantile(q, metric, by, selector) =
    'histogram_quantile(%s, sum by (%s) (rate(%s_bucket%s[$__rate_interval])))'
    % [q, by, metric, if selector == '' then '' else '{%s}' % selector],
  local classicQuantile(q, by, selector=routes) =
    bucketQuantile(q, n.duration, std.join(', ', std.filter(function(l) l != '', [by, 'le'])), selector),
  // From the native histogram where Prometheus stores one, else from the classic buckets.
  local nativeQuantile(q, by, selector=routes) =
    '(histogram_quantile(%s, %s(rate(%s{%s}[$__rate_interval])))) or (%s)'
    % [q, sumBy(by), n.duration, selector, classicQuantile(q, by, selector)],
  // The duration quantile of the Summary and top-routes panels: with histograms: 'native',
  // from the native histogram first.
  local quantile(q, by, selector=routes) =
    if c.histograms == 'native' then nativeQuantile(q, by, selector) else classicQuantile(q, by, selector),
  local sizeQuantiles(metric) = [
    t(bucketQuantile(q, metric, n.route + ', le', routes), 'p%s {{%s}}' % [percentile(q), n.route])
    for q in ['0.5', '0.9']
  ],
  local percentile(q) = { '0.5': '50', '0.9': '90', '0.95': '95', '0.99': '99' }[q],
  local classic = c.histograms != 'native',
  local native = c.histograms != 'classic',
  local preset = { otel: 'OpenTelemetry', promclient: 'PromClient' }[c.naming],
  local bodyEnd = 'measured to the end of the response body',

  local burnRate(id, window, factor, alert) =
    g.timeseries(
      id,
      'Error budget burn rate (%s window)' % window,
      'Bad requests over the last %(w)s divided by the error budget, per route and objective declared with `HttpMetricsBuilder::objective` (the SLO recording rules, slo.rules.yml): 1 spends exactly the 30-day budget in 30 days. %(alert)s fires at %(f)s× (with its short window agreeing). Routes without an objective have no line.' % { w: window, alert: alert, f: factor },
      'short',
      [t('job_route:slo_errors:ratio_rate%(w)s{job=~"$job", %(route)s=~"$route"} / on (job, %(route)s, objective) job_route:slo_error_budget:ratio{job=~"$job", %(route)s=~"$route"}' % { w: window, route: n.route }, '{{%s}} {{objective}}' % n.route)],
      defaults={ min: 0, thresholds: g.thresholds([['orange', 1], ['red', factor]]) },
      // The axis reaches the alert's line even while the burn rate is far below it.
      custom={ thresholdsStyle: { mode: 'line' }, axisSoftMax: factor },
    ),

  local serviceOverview =
    g.row(1, 'Summary', [
      g.stat(2, 'Request rate', 'Requests per second answered by the selected replicas and routes (every status).', 'reqps', [t(requests(), 'requests/s')]),
      g.stat(
        3,
        '5xx ratio',
        'Share of requests answered with a 5xx status. 0 when there were none.',
        'percentunit',
        [t('(%s or vector(0)) / %s' % [requests(matchers='%s=~"5.."' % n.status), requests()], '5xx')],
        { decimals: 2, thresholds: g.thresholds([['orange', 0.001], ['red', 0.05]]) },
      ),
      g.stat(4, 'p99 latency', '99th percentile of the request duration over every selected route, %s.' % bodyEnd, 's', [t(quantile('0.99', ''), 'p99')], { thresholds: g.thresholds([['orange', 0.25], ['red', 0.5]]) }),
      g.stat(5, 'Replicas up', 'Scraped replicas that answered their last scrape (`up`), out of those discovered.', 'short', [t('sum(up{%s})' % replicas, 'up')]),
    ])
    + g.row(6, 'Traffic and errors', [
      g.timeseries(7, 'Request rate by route', 'Requests per second per route template. Requests that matched no route (404s, scanners) have no route label and show as an empty name.', 'reqps', [t(requests(n.route), '{{%s}}' % n.route)]),
      g.timeseries(8, 'Request rate by status', "Requests per second per status code: 4xx are the clients' mistakes, 5xx are ours, 499 are clients that gave up before the answer.", 'reqps', [t(requests(n.status), '{{%s}}' % n.status)]),
      g.timeseries(
        9,
        'Error ratio (5xx) by route',
        'Share of the requests of each route answered with a 5xx. Routes without errors show 0.',
        'percentunit',
        [t('(%s or 0 * %s) / %s' % [requests(n.route, '%s=~"5.."' % n.status), requests(n.route), requests(n.route)], '{{%s}}' % n.route)],
        defaults={ min: 0 },
      ),
      g.timeseries(10, 'In-flight requests', 'Requests entered and not finished (body not fully sent), per method. The layer keeps no route on this gauge.', 'short', [t('sum by (%s) (%s{%s})' % [n.method, n.active, replicas], '{{%s}}' % n.method)], defaults={ min: 0 }),
    ])
    + g.row(30, 'Connections', [
      g.timeseries(
        31,
        'Open connections',
        'Connections accepted and not yet closed, per replica and listener (`%(open)s`, from `Metrics::listener`), and the listener\'s cap where it has one (`max_connections`, dashed): near it, the next connections are turned away (ConnectionsNearLimit). HTTP/1.1 keep-alive and HTTP/2 connections count once, whatever the requests they carry; half-open connections (slowloris) count until the header-read timeout closes them.' % { open: n.openConnections },
        'short',
        [
          t('sum by (instance, server_port) (%s{%s})' % [n.openConnections, replicas], 'open {{instance}} :{{server_port}}'),
          t('sum by (instance, server_port) (%s{%s})' % [n.connectionLimit, replicas], 'limit {{instance}} :{{server_port}}'),
        ],
        defaults={ min: 0 },
        custom={ axisLabel: 'connections' },
      ),
      g.timeseries(
        32,
        'Connections opened and closed per second',
        'Closed: the rate of the connection duration histogram\'s count. Opened: closed plus the growth of the open gauge (`deriv`). Opened above closed for long is connections piling up (keep-alive clients, a slowloris); many short connections per request mean clients that do not reuse them.',
        'short',
        [
          t('sum by (instance) (rate(%s_count{%s}[$__rate_interval])) + sum by (instance) (deriv(%s{%s}[$__rate_interval]))' % [n.connectionDuration, replicas, n.openConnections, replicas], 'opened {{instance}}'),
          t('sum by (instance) (rate(%s_count{%s}[$__rate_interval]))' % [n.connectionDuration, replicas], 'closed {{instance}}'),
        ],
        custom={ axisLabel: 'connections/s' },
      ),
      g.timeseries(
        33,
        'Connection duration p50 / p90 / p99',
        'How long connections stay open, from accept to close, per listener (buckets 10 ms to 5 min). Keep-alive connections last up to the idle timeout; half-open ones up to the header-read timeout: a p50 at that timeout is connections that never sent a request.',
        's',
        [
          t(bucketQuantile(q, n.connectionDuration, 'server_port, le', replicas), 'p%s :{{server_port}}' % percentile(q))
          for q in ['0.5', '0.9', '0.99']
        ],
        width=8,
      ),
      g.timeseries(
        34,
        'Accept errors by kind',
        'Failed accepts per second, by `error_type`: `fd_limit` is "too many open files" (EMFILE, ENFILE: compare open descriptors with the limit on the Runtime dashboard), `out_of_memory`, `_OTHER`; `connection_aborted` (a client gone before its accept) is harmless. The accept loop pauses and goes on; meanwhile new connections wait in the listen backlog (ConnectionAcceptErrors).',
        'short',
        [t('sum by (instance, error_type) (rate(%s{%s}[$__rate_interval]))' % [n.acceptErrors, replicas], '{{instance}} {{error_type}}')],
        width=8,
        defaults={ min: 0 },
        custom={ axisLabel: 'errors/s' },
      ),
      g.timeseries(
        35,
        'Connections turned away',
        'Connections per second accepted and closed at once because the listener had `max_connections` open: clients that got no answer. Above 0, the cap is reached (see Open connections).',
        'short',
        [t('sum by (instance, server_port) (rate(%s{%s}[$__rate_interval]))' % [n.rejectedConnections, replicas], '{{instance}} :{{server_port}}')],
        width=8,
        defaults={ min: 0 },
        custom={ axisLabel: 'connections/s' },
      ),
    ])
    + g.row(27, 'Service level objectives', if c.showSlo then [
      burnRate(28, '1h', 14.4, 'ErrorBudgetBurnFast (page)'),
      burnRate(29, '1d', 3, 'ErrorBudgetBurnSlow (ticket)'),
    ] else [])
    + g.row(11, 'Latency', if classic then [
      g.timeseries(p.id, 'Latency p%s by route' % percentile(p.q), '%sth percentile of the request duration per route, from the histogram buckets of every selected replica, %s.' % [percentile(p.q), bodyEnd], 's', [t(classicQuantile(p.q, n.route), '{{%s}}' % n.route)], width=8)
      for p in [{ id: 12, q: '0.5' }, { id: 13, q: '0.9' }, { id: 14, q: '0.99' }]
    ] + [
      g.heatmap(15, 'Latency heatmap', 'Requests per second per duration bucket (the `_bucket` series), every selected route together. A second band above the main one is a slow path.', [t('sum by (le) (rate(%s_bucket{%s}[$__rate_interval]))' % [n.duration, routes], '{{le}}')]),
    ] else [])
    + g.row(24, 'Latency (native histograms)', if native then [
      g.timeseries(
        25,
        'Latency quantiles by route (native)',
        'p50, p90 and p99 of the request duration per route from the native histogram (`%s`, no `_bucket`), which a Prometheus with native histograms scrapes in protobuf: exponential buckets 9%% wide, no bucket bounds to choose. Where Prometheus stores the classic buckets only (no `native-histograms` feature), each query falls back to them after `or`. Exemplars (trace ids) are shown on the p99 line.' % n.duration,
        's',
        [
          t(nativeQuantile(q, n.route), 'p%s {{%s}}' % [percentile(q), n.route], if q == '0.99' then { exemplar: true } else {})
          for q in ['0.5', '0.9', '0.99']
        ],
        width=24,
      ),
      g.heatmap(26, 'Latency heatmap (native)', "Requests per second per native bucket, every selected route together: Grafana draws the native histogram's exponential buckets (9% wide) as they are. Without native histograms in Prometheus, the classic `_bucket` series after `or`. Exemplars link a cell to a trace.", [
        t('(sum(rate(%s{%s}[$__rate_interval]))) or on () (sum by (le) (rate(%s_bucket{%s}[$__rate_interval])))' % [n.duration, routes, n.duration, routes], '{{le}}', { exemplar: true }),
      ]),
    ] else [])
    + g.row(16, 'Sizes and top routes', [
      g.timeseries(17, 'Request body size by route', 'Median and 90th percentile of the request body bytes the service read, per route (0 for bodiless requests).', 'bytes', sizeQuantiles(n.requestSize)),
      g.timeseries(18, 'Response body size by route', 'Median and 90th percentile of the response body bytes streamed, per route.', 'bytes', sizeQuantiles(n.responseSize)),
      g.bargauge(19, 'Top routes by request rate', 'The 10 busiest routes now.', 'reqps', [t('topk(10, sum by (%s) (rate(%s_count{%s}[$__rate_interval])))' % [n.route, n.duration, replicas], '{{%s}}' % n.route, g.instant)]),
      g.bargauge(20, 'Slowest routes (p99)', 'The 10 routes with the highest p99 latency now.', 's', [t('topk(10, %s)' % quantile('0.99', n.route, replicas), '{{%s}}' % n.route, g.instant)]),
    ])
    + g.row(21, 'Invoicing (business metrics of the example app)', if c.showInvoicing then [
      g.timeseries(22, 'Invoices created by status', 'Invoices created per second, by status at creation (`invoicing_invoices_created_total`).', 'short', [t('sum by (status) (rate(invoicing_invoices_created_total{%s}[$__rate_interval]))' % replicas, '{{status}}')], custom={ axisLabel: 'invoices/s' }),
      g.timeseries(23, 'Database operation p99', '99th percentile of each database operation (a transaction counts as one), `invoicing_db_query_duration_seconds`.', 's', [t(bucketQuantile('0.99', 'invoicing_db_query_duration_seconds', 'operation, le', replicas), '{{operation}}')]),
      g.timeseries(40, 'PDP submissions pending', "Issued invoices whose submission to the PDP is written down and not answered yet (`invoicing_pdp_submissions_pending`), as each replica counts them in its database: replicas that share one database show the same count. Near 0 when the PDP answers; a count that only climbs means the PDP does not answer, and the app keeps retrying (runbook: PdpSubmissionsStuck).", 'short', [t('invoicing_pdp_submissions_pending{%s}' % replicas, '{{instance}}')], width=8, defaults={ min: 0 }),
      g.timeseries(41, 'PDP submissions answered and retried', "Submissions per second the PDP answered, by the code of the answer kept on the invoice (OK: a submission id; ALREADY_EXISTS, INVALID_ARGUMENT: refusals), and attempts per second that got no answer (unreachable, deadline exceeded) and were scheduled again (`invoicing_pdp_submission_retries_total`).", 'short', [
        t('sum by (code) (rate(invoicing_pdp_submissions_answered_total{%s}[$__rate_interval]))' % replicas, 'answered {{code}}'),
        t('sum(rate(invoicing_pdp_submission_retries_total{%s}[$__rate_interval]))' % replicas, 'retried'),
      ], width=8, custom={ axisLabel: 'submissions/s' }),
      g.timeseries(42, 'Oldest pending PDP submission', 'How long the oldest submission not answered yet has waited (from `invoicing_pdp_submissions_oldest_pending_timestamp_seconds`), per replica; 0 when none is pending. PdpSubmissionsStuck opens a ticket past 10 minutes (the red line).', 's', [
        t('(time() - invoicing_pdp_submissions_oldest_pending_timestamp_seconds{%(r)s}) * (invoicing_pdp_submissions_oldest_pending_timestamp_seconds{%(r)s} > bool 0)' % { r: replicas }, '{{instance}}'),
      ], width=8, defaults={ min: 0, thresholds: g.thresholds([['red', 600]]) }, custom={ thresholdsStyle: { mode: 'line' } }),
    ] else []),

  local runtime =
    local lag(q, by) = bucketQuantile(q, 'tokio_event_loop_lag_seconds', by, replicas);
    local perInstance(metric) = [t('%s{%s}' % [metric, replicas], '{{instance}}')];
    local rate(metric) = 'rate(%s{%s}[$__rate_interval])' % [metric, replicas];
    g.row(1, 'Summary', [
      g.stat(2, 'Uptime', "Time since each replica's process started (`process_start_time_seconds`).", 's', [t('time() - process_start_time_seconds{%s}' % replicas, '{{instance}}')]),
      g.stat(3, 'Restarts in range', "Times a replica's process started again during the dashboard's time range (a change of `process_start_time_seconds`).", 'short', [t('sum(changes(process_start_time_seconds{%s}[$__range]))' % replicas, 'restarts', g.instant)], { thresholds: g.thresholds([['red', 1]]) }),
      g.stat(4, 'Tokio workers', 'Worker threads of each runtime (one per core by default).', 'short', perInstance('tokio_workers')),
      g.stat(5, 'Event-loop lag p99', '99th percentile of the time a ready task waits before a worker polls it, every selected replica together.', 's', [t(lag('0.99', 'le'), 'p99')], { thresholds: g.thresholds([['orange', 0.01], ['red', 0.05]]) }),
    ])
    + g.row(6, 'Tokio runtime', [
      g.timeseries(7, 'Event-loop lag', 'p50, p90 and p99 of the delay between a task becoming ready and being polled, sampled every 10 ms by a probe task. Milliseconds mean a blocking call or a CPU-bound task on a worker.', 's', [
        t(lag(q, 'instance, le'), 'p%s {{instance}}' % percentile(q))
        for q in ['0.5', '0.9', '0.99']
      ], width=8),
      g.timeseries(20, 'Which route blocks the runtime', "Slow-poll time by route: per second, the time the route's handlers spent in polls longer than the slow-poll threshold (tokio_task_slow_poll_seconds_total, from the layer's task monitors), i.e. the share of one worker thread they held while every other task on it waited. When the event-loop lag beside it rises, the route on top is the one blocking: move its CPU work or blocking call to spawn_blocking, or yield (runbook: RouteBlocksRuntime).", 'percentunit', [t('sum by (%s) (%s)' % [n.route, rate('tokio_task_slow_poll_seconds_total')], '{{%s}}' % n.route)], width=8),
      g.timeseries(8, 'Worker busy ratio', "Share of the workers' time spent polling tasks (1 = every worker busy all the time).", 'percentunit', [t('sum by (instance) (%s) / sum by (instance) (tokio_workers{%s})' % [rate('tokio_worker_busy_seconds_total'), replicas], '{{instance}}')], width=8, defaults={ min: 0, max: 1 }),
      g.timeseries(9, 'Alive tasks', 'Tasks spawned and not finished: connections, requests, background jobs. A line that only climbs is a task leak.', 'short', perInstance('tokio_alive_tasks'), width=8),
      g.timeseries(10, 'Global queue depth', "Tasks waiting in the runtime's global queue. Above 0 for long: the workers cannot keep up (RuntimeSaturated).", 'short', perInstance('tokio_global_queue_depth'), width=8, defaults={ min: 0 }),
      g.timeseries(11, 'Worker parks', 'Times per second the workers went idle: high when lightly loaded, falls toward 0 at saturation.', 'short', [t(rate('tokio_worker_parks_total'), '{{instance}}')], width=8, custom={ axisLabel: 'parks/s' }),
    ])
    + g.row(12, 'Process', [
      g.timeseries(13, 'CPU', 'CPU time per second, user and system, per replica (100% = one core).', 'percentunit', [
        t(rate('process_cpu_user_seconds_total'), 'user {{instance}}'),
        t(rate('process_cpu_system_seconds_total'), 'system {{instance}}'),
      ], defaults={ min: 0 }),
      g.timeseries(14, 'Resident memory', 'Resident set size of each process: what the OS (and a container memory limit) counts.', 'bytes', perInstance('process_resident_memory_bytes'), defaults={ min: 0 }),
      g.timeseries(15, 'Live heap', 'Heap bytes allocated and not freed, from the counting allocator (feature `heap`). The gap to the resident memory is code, stacks and allocator slack.', 'bytes', perInstance('rust_heap_live_bytes'), width=8, defaults={ min: 0 }),
      g.timeseries(16, 'Heap allocation rate', 'Bytes allocated per second: churn, even when the live heap stays flat.', 'Bps', [t(rate('rust_heap_allocated_bytes_total'), '{{instance}}')], width=8),
      g.timeseries(17, 'Open file descriptors vs limit', 'Open descriptors (sockets, files, the SQLite database) and the soft limit of each process.', 'short', [
        t('process_open_fds{%s}' % replicas, 'open {{instance}}'),
        t('process_max_fds{%s}' % replicas, 'limit {{instance}}'),
      ], width=8, custom={ axisLabel: 'descriptors', scaleDistribution: { type: 'log', log: 10 } }),
      g.timeseries(18, 'Threads', 'OS threads of each process: Tokio workers, blocking pool (SQLite, files) and the rest.', 'short', perInstance('process_threads')),
      g.timeseries(19, 'Process starts', 'Start time of each process (`process_start_time_seconds`): a step is a restart.', 'dateTimeAsIso', [t('process_start_time_seconds{%s} * 1000' % replicas, '{{instance}}')]),
    ]),

  local rpc =
    local served(by, matchers='') =
      'sum by (%s) (rate(rpc_server_call_duration_seconds_count{%s%s}[$__rate_interval]))' % [by, replicas, matchers];
    g.row(1, 'Served (rpc_server_call_duration_seconds)', [
      g.timeseries(2, 'Call rate by method', 'gRPC calls per second served, by job and full method (package.Service/Method; _OTHER: methods the server does not have).', 'reqps', [t(served('job, rpc_method'), '{{job}} {{rpc_method}}')]),
      g.timeseries(3, 'Calls by status code, OK excluded', 'gRPC calls per second answered with a status other than OK, by code: client errors (INVALID_ARGUMENT, ALREADY_EXISTS, NOT_FOUND) and server errors (INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, UNIMPLEMENTED, …).', 'reqps', [t(served('job, rpc_method, rpc_response_status_code', ', rpc_response_status_code!="OK"'), '{{job}} {{rpc_method}} {{rpc_response_status_code}}')]),
      g.timeseries(4, 'Server error ratio', "Share of calls that failed by the server's doing (those with an error_type: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, cancelled ones excluded), per job; the GrpcServerErrorRatioHigh alert fires above 5%.", 'percentunit', [t('%s / %s or %s * 0' % [served('job', ', error_type!=""'), served('job'), served('job')], '{{job}}')]),
      g.timeseries(5, 'Call duration p50 / p95 / p99', "Quantiles of the time from a call's arrival to the end of its response stream (streaming calls last as long as their stream), by method.", 's', [
        t(bucketQuantile(q, 'rpc_server_call_duration_seconds', 'le, rpc_method', replicas), 'p%s {{rpc_method}}' % percentile(q))
        for q in ['0.5', '0.95', '0.99']
      ]),
      g.timeseries(6, 'Calls in flight', 'gRPC calls served and not yet finished (open streams included), per instance.', 'short', [t('sum by (job, instance) (rpc_server_active_calls{%s})' % replicas, '{{job}} {{instance}}')], width=24, height=6),
    ])
    + g.row(7, 'Made (rpc_client_call_duration_seconds)', [
      g.timeseries(8, 'Outgoing calls by server and code', 'gRPC calls per second made through the client layer, by caller, server and status code (for calls that failed before an answer: the code the client reports, UNAVAILABLE or DEADLINE_EXCEEDED). Calls of every job (a client is labelled with the server it calls, not its job).', 'reqps', [t('sum by (job, server_address, server_port, rpc_method, rpc_response_status_code) (rate(rpc_client_call_duration_seconds_count[$__rate_interval]))', '{{job}} → {{server_address}}:{{server_port}} {{rpc_method}} {{rpc_response_status_code}}')]),
      g.timeseries(9, 'Outgoing call duration p95', '95th percentile of outgoing call durations, by server and method: the latency callers see, network included. Calls of every job (a client is labelled with the server it calls, not its job).', 's', [t(bucketQuantile('0.95', 'rpc_client_call_duration_seconds', 'le, server_address, rpc_method', ''), '{{server_address}} {{rpc_method}}')]),
    ]),

  local instanceOf(series) = g.variable('instance', '%s{job=~"$job"}' % series, 'instance', multi=true),

  grafanaDashboards+:: {
    'service-overview.json': g.dashboard(
      'tower-prometheus-service' + c.uidSuffix,
      'Service overview' + c.titleSuffix,
      'RED view of a service instrumented with tower-prometheus (%s metric names): rate, errors, duration per route, across replicas.' % preset,
      ['tower-prometheus', 'http', 'red'],
      [
        g.variable('job', n.duration + '_count', 'job', current=c.defaultJob),
        instanceOf(n.duration + '_count'),
        g.variable('route', '%s_count{%s}' % [n.duration, replicas], n.route, multi=true),
      ],
      serviceOverview,
    ),
    'runtime.json': g.dashboard(
      'tower-prometheus-runtime' + c.uidSuffix,
      'Runtime' + c.titleSuffix,
      'Tokio runtime, process and heap metrics of a service instrumented with tower-prometheus, per replica.',
      ['tower-prometheus', 'tokio', 'process'],
      [g.variable('job', 'tokio_workers', 'job', current=c.defaultJob), instanceOf('tokio_workers')],
      runtime,
    ),
  } + (if c.showRpc then {
         'rpc.json': g.dashboard(
           'tower-prometheus-rpc' + c.uidSuffix,
           'gRPC calls' + c.titleSuffix,
           'gRPC calls served by the selected job (a gRPC server instrumented with tower-prometheus, OpenTelemetry RPC conventions) and calls made by every client layer: rate, errors by code, latency.',
           ['tower-prometheus', 'grpc', 'rpc'],
           [g.variable('job', 'rpc_server_call_duration_seconds_count', 'job'), instanceOf('rpc_server_call_duration_seconds_count')],
           rpc,
         ),
       } else {}),
}
