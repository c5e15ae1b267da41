// `promtool test rules` cases of slo.libsonnet, written once for both naming presets:
// (import 'slo_tests.libsonnet')(naming, ruleFile) is the test file's content.
// Cases: objectives met; a page burn of each kind; a ticket burn; a route without an
// objective; a latency threshold on an integer bound in both spellings of `le`.
function(naming='otel', ruleFile='slo.rules.yml')
  local n = {
    otel: {
      duration: 'http_server_request_duration_seconds',
      route: 'http_route',
      status: 'http_response_status_code',
      objective: 'http_server_objective_ratio',
    },
    promclient: {
      duration: 'http_request_duration_seconds',
      route: 'route',
      status: 'status_code',
      objective: 'http_request_objective_ratio',
    },
  }[naming];
  local instance = 'job="invoicing", instance="10.0.0.2:3000"';
  local series(name, labels, values) = {
    series: '%s{%s, %s}' % [name, instance, std.join(', ', ['%s="%s"' % [k, labels[k]] for k in std.objectFields(labels)])],
    values: values,
  };
  local route(r) = { [n.route]: r };
  // Requests per minute of `route`: `ok` answered 200, `errors` answered 500, for `minutes`.
  local requests(r, ok, errors, minutes) = [
    series(n.duration + '_count', route(r) { [n.status]: '200' }, '0+%dx%d' % [ok, minutes]),
    series(n.duration + '_count', route(r) { [n.status]: '500' }, '0+%dx%d' % [errors, minutes]),
  ];
  // Buckets of `route`'s 200s: `fast` of the `ok` requests a minute within `le`.
  local bucket(r, le, fast, minutes) =
    series(n.duration + '_bucket', route(r) { [n.status]: '200', le: le }, '0+%dx%d' % [fast, minutes]);
  local objective(r, kind, target, threshold=null, minutes=300) =
    series(n.objective, route(r) { objective: kind } + (if threshold == null then {} else { threshold: threshold }), '%s+0x%d' % [target, minutes]);
  local labels(r, kind) = '{job="invoicing", %s="%s", objective="%s"}' % [n.route, r, kind];
  // The alert as it fires, annotations included: `bad` is the long window's ratio as
  // humanizePercentage writes it.
  local runbook = 'https://github.com/tower-prometheus/tower-prometheus/blob/main/monitoring/README.md';
  local alert(name, r, kind, severity, bad) = {
    exp_labels: { job: 'invoicing', [n.route]: r, objective: kind, severity: severity },
    exp_annotations: if name == 'ErrorBudgetBurnFast' then {
      summary: 'invoicing %s burns its %s error budget fast' % [r, kind],
      description: 'The %s objective of %s (invoicing) has %s of bad requests over the long window: at 14.4x (1h and 5m) or 6x (6h and 30m) its error budget, the 30-day budget is gone in less than 5 days.' % [kind, r, bad],
      runbook: runbook + '#errorbudgetburnfast',
    } else {
      summary: 'invoicing %s burns its %s error budget steadily' % [r, kind],
      description: 'The %s objective of %s (invoicing) has %s of bad requests over the long window: at 3x (1d and 2h) or 1x (3d and 6h) its error budget, the 30-day budget runs out before it is earned back.' % [kind, r, bad],
      runbook: runbook + '#errorbudgetburnslow',
    },
  };
  local invoices = '/api/invoices';
  local declared = [
    objective(invoices, 'availability', '0.999'),
    objective(invoices, 'latency', '0.99', '0.25'),
  ];
  {
    rule_files: [ruleFile],
    evaluation_interval: '1m',
    tests: [
      {
        name: 'objectives met: 0.05% of 5xx and 0.5% slow, half the budgets, for 3 hours: no alert',
        interval: '1m',
        input_series: declared + requests(invoices, 1999, 1, 200) + [bucket(invoices, '0.25', 1990, 200)],
        alert_rule_test: [
          { eval_time: '190m', alertname: 'ErrorBudgetBurnFast', exp_alerts: [] },
          { eval_time: '190m', alertname: 'ErrorBudgetBurnSlow', exp_alerts: [] },
        ],
        promql_expr_test: [
          {
            // In parts per 100,000: round(x, 0.00001) leaves float noise.
            expr: 'round(job_route:slo_errors:ratio_rate1h * 100000)',
            eval_time: '190m',
            exp_samples: [
              { labels: labels(invoices, 'availability'), value: 50 },
              { labels: labels(invoices, 'latency'), value: 500 },
            ],
          },
          {
            expr: 'round(job_route:slo_error_budget:ratio, 0.0001)',
            eval_time: '190m',
            exp_samples: [
              { labels: labels(invoices, 'availability'), value: 0.001 },
              { labels: labels(invoices, 'latency'), value: 0.01 },
            ],
          },
        ],
      },
      {
        name: 'availability page: 5% of 5xx is 50x the 0.1% budget; the latency objective holds',
        interval: '1m',
        input_series: declared + requests(invoices, 95, 5, 80) + [bucket(invoices, '0.25', 95, 80)],
        alert_rule_test: [
          { eval_time: '75m', alertname: 'ErrorBudgetBurnFast', exp_alerts: [alert('ErrorBudgetBurnFast', invoices, 'availability', 'page', '5%')] },
        ],
        promql_expr_test: [
          {
            expr: 'round(job_route:slo_errors:ratio_rate1h, 0.0001)',
            eval_time: '75m',
            exp_samples: [
              { labels: labels(invoices, 'availability'), value: 0.05 },
              { labels: labels(invoices, 'latency'), value: 0.05 },
            ],
          },
        ],
      },
      {
        name: 'latency page: 20% of requests over 250 ms is 20x the 1% budget; no 5xx',
        interval: '1m',
        input_series: declared + requests(invoices, 100, 0, 80) + [bucket(invoices, '0.25', 80, 80)],
        alert_rule_test: [
          { eval_time: '75m', alertname: 'ErrorBudgetBurnFast', exp_alerts: [alert('ErrorBudgetBurnFast', invoices, 'latency', 'page', '20%')] },
        ],
      },
      {
        name: 'ticket, not page: 0.5% of 5xx for 3 hours is 5x the budget',
        interval: '1m',
        input_series: declared + requests(invoices, 995, 5, 200) + [bucket(invoices, '0.25', 995, 200)],
        alert_rule_test: [
          { eval_time: '190m', alertname: 'ErrorBudgetBurnFast', exp_alerts: [] },
          { eval_time: '190m', alertname: 'ErrorBudgetBurnSlow', exp_alerts: [alert('ErrorBudgetBurnSlow', invoices, 'availability', 'ticket', '0.5%')] },
        ],
      },
      {
        name: 'a route without an objective: all 5xx, no error ratio and no alert',
        interval: '1m',
        input_series: declared + requests(invoices, 100, 0, 80) + requests('/api/uploads', 0, 100, 80)
                       + [bucket(invoices, '0.25', 100, 80)],
        alert_rule_test: [
          { eval_time: '75m', alertname: 'ErrorBudgetBurnFast', exp_alerts: [] },
        ],
        promql_expr_test: [
          {
            expr: 'job_route:slo_errors:ratio_rate5m{%s="/api/uploads"}' % n.route,
            eval_time: '75m',
            exp_samples: [],
          },
        ],
      },
      {
        // Text 0.0.4 writes the 1 s bucket le="1", OpenMetrics and protobuf le="1.0"; the
        // objective says threshold="1.0". Each replica here is scraped in one of them.
        name: 'a threshold on an integer bound joins the bucket in either spelling of le',
        interval: '1m',
        input_series: [
          objective('/a', 'latency', '0.9', '1.0'),
          objective('/b', 'latency', '0.9', '1.0'),
          bucket('/a', '1', 70, 80),
          bucket('/b', '1.0', 70, 80),
        ] + requests('/a', 100, 0, 80) + requests('/b', 100, 0, 80),
        promql_expr_test: [
          {
            expr: 'round(job_route:slo_errors:ratio_rate1h, 0.0001)',
            eval_time: '75m',
            exp_samples: [
              { labels: labels('/a', 'latency'), value: 0.3 },
              { labels: labels('/b', 'latency'), value: 0.3 },
            ],
          },
        ],
      },
    ],
  }
