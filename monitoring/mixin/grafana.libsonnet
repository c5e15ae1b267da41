// The building blocks of the Grafana dashboards (dashboards.libsonnet): panels with the
// house defaults, rows, the dashboard skeleton, query variables, and a layout that places
// panels left to right and wraps at the grid's 24 columns, so that a panel or row left out
// by the _config leaves no hole.
//
// House rules (checked by monitoring/checks/tests/dashboards.rs): every panel has a unit
// and a description, every query reads the "prometheus" datasource and every rate() is
// over $__rate_interval.
local datasource = { type: 'prometheus', uid: 'prometheus' };

// The legend as a table with mean, max and last, and a tooltip listing every series.
local legendTable = {
  legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: ['mean', 'max', 'lastNotNull'] },
  tooltip: { mode: 'multi', sort: 'desc' },
};
local lastValue = { calcs: ['lastNotNull'], fields: '', values: false };

// The shortest decimal that reads back as x (jsonnet writes 0.05 as 0.050000000000000003).
local shortest(x) =
  if x == std.floor(x) then std.toString(x)
  else std.filter(function(s) std.parseJson(s) == x, [('%.' + p + 'g') % x for p in std.range(1, 17)])[0];
local marked(v) =
  if std.isNumber(v) && v != std.floor(v) then '@@number(' + shortest(v) + ')@@'
  else if std.isArray(v) then [marked(x) for x in v]
  else if std.isObject(v) then { [k]: marked(v[k]) for k in std.objectFields(v) }
  else v;

{
  // A query: `expr` drawn as `legend`; `extra` overrides the defaults (e.g. instant).
  target(expr, legend, extra={}):: { expr: expr, legendFormat: legend } + extra,
  instant:: { range: false, instant: true },

  // A panel of `type` with its targets lettered A, B, C…
  panel(type, id, title, description, unit, targets, width, height, defaults={}, options={}):: {
    type: type,
    id: id,
    title: title,
    description: description,
    datasource: datasource,
    gridPos: { w: width, h: height },
    fieldConfig: { defaults: { unit: unit } + defaults, overrides: [] },
    targets: [
      { datasource: datasource, refId: std.char(65 + i), range: true, instant: false, editorMode: 'code' } + targets[i]
      for i in std.range(0, std.length(targets) - 1)
    ],
    options: options,
  },

  // Lines, 10 % filled, no points; `custom` adds to the line style (axisLabel, scale).
  timeseries(id, title, description, unit, targets, width=12, height=8, defaults={}, custom={})::
    self.panel('timeseries', id, title, description, unit, targets, width, height, defaults {
      custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, showPoints: 'never', spanNulls: false } + custom,
    }, legendTable),

  // The last value, with its sparkline.
  stat(id, title, description, unit, targets, defaults={})::
    self.panel('stat', id, title, description, unit, targets, 6, 4, defaults, {
      reduceOptions: lastValue,
      colorMode: 'value',
      graphMode: 'area',
      textMode: 'auto',
    }),

  // Horizontal bars of one instant query.
  bargauge(id, title, description, unit, targets)::
    self.panel('bargauge', id, title, description, unit, targets, 12, 8, {}, {
      orientation: 'horizontal',
      displayMode: 'gradient',
      reduceOptions: lastValue,
      showUnfilled: true,
    }),

  // Rate per bucket, drawn from the buckets as they are (no recalculation): classic `le`
  // series, or a native histogram.
  heatmap(id, title, description, targets)::
    self.panel('heatmap', id, title, description, 'reqps', [t { format: 'heatmap' } for t in targets], 24, 9, {}, {
      calculate: false,
      yAxis: { axisPlacement: 'left', unit: 's' },
      cellValues: { unit: 'reqps' },
      color: { mode: 'scheme', scheme: 'Oranges', exponent: 0.5, steps: 64, fill: 'dark', scale: 'exponential', reverse: false },
      rowsFrame: { layout: 'auto' },
      tooltip: { mode: 'single', yHistogram: true },
      legend: { show: true },
      filterValues: { le: 1e-09 },
      exemplars: { color: 'rgba(255,0,255,0.7)' },
    }),

  // Green up to the first step, then each [color, value].
  thresholds(steps):: {
    mode: 'absolute',
    steps: [{ color: 'green', value: null }] + [{ color: s[0], value: s[1] } for s in steps],
  },

  // A row and the panels under it; an empty list of panels drops the row.
  row(id, title, panels):: if std.length(panels) == 0 then [] else [{
    type: 'row',
    id: id,
    title: title,
    collapsed: false,
    gridPos: { w: 24, h: 1 },
    panels: [],
  }] + panels,

  // A label_values() variable. `current`: the value selected when the dashboard opens
  // (null: the first one); `multi`: several values and "All" (as the regex .*).
  variable(name, series, label, multi=false, current=null)::
    local query = 'label_values(%s, %s)' % [series, label];
    {
      name: name,
      label: name,
      type: 'query',
      datasource: datasource,
      definition: query,
      query: { qryType: 1, query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
      refresh: 2,
      sort: 1,
      multi: multi,
      includeAll: multi,
      hide: 0,
      regex: '',
      options: [],
    } + (if multi then {
           allValue: '.*',
           current: { selected: true, text: ['All'], value: ['$__all'] },
         } else if current != null then {
           current: { selected: true, text: current, value: current },
         } else {}),

  // `panels` placed left to right, each row on a line of its own, a panel wrapping to the
  // next line when it does not fit the 24 columns.
  layout(panels)::
    std.foldl(function(at, p)
      local wrap = p.type == 'row' || at.x + p.gridPos.w > 24;
      local x = if wrap then 0 else at.x;
      local y = if wrap then at.bottom else at.y;
      {
        x: x + p.gridPos.w,
        y: y,
        bottom: std.max(at.bottom, y + p.gridPos.h),
        panels: at.panels + [p { gridPos+: { x: x, y: y } }],
      }, panels, { x: 0, y: 0, bottom: 0, panels: [] }).panels,

  // A dashboard: a fixed uid, the $job/$instance (…) variables, links to the other
  // tower-prometheus dashboards keeping the time range and the variables.
  dashboard(uid, title, description, tags, variables, panels):: {
    uid: uid,
    title: title,
    description: description,
    tags: tags,
    editable: true,
    graphTooltip: 1,
    timezone: '',
    refresh: '30s',
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    templating: { list: variables },
    annotations: { list: [{
      builtIn: 1,
      datasource: { type: 'grafana', uid: '-- Grafana --' },
      enable: true,
      hide: true,
      iconColor: 'rgba(0, 211, 255, 1)',
      name: 'Annotations & Alerts',
      type: 'dashboard',
    }] },
    links: [{
      title: 'tower-prometheus dashboards',
      type: 'dashboards',
      tags: ['tower-prometheus'],
      asDropdown: false,
      includeVars: true,
      keepTime: true,
    }],
    panels: $.layout(panels),
  },

  // The dashboard with every fraction as the string "@@number(<shortest decimal>)@@", for
  // monitoring/mixin/generate.sh to unquote: jsonnet writes 0.05 as 0.050000000000000003.
  numbers(dashboard):: marked(dashboard),
}
