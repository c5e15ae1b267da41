// The two naming presets of tower-prometheus (`Naming::OpenTelemetry`, the default, and
// `Naming::PromClient`): the HTTP and connection metric names and the label names that
// differ between them (the connection labels server_address, server_port and
// error_type are the same in both; network_transport and network_type exist only with
// the OpenTelemetry names, and no rule or panel uses them). The
// process, runtime, heap, task and gRPC metrics are the same in both.
//
//   (import 'naming.libsonnet').presets[naming]   the names of one preset
//   (import 'naming.libsonnet').rename(naming, v)  v (any JSON value: a string, a rule
//       test file parsed from YAML) with every OpenTelemetry name of the table below
//       replaced by the preset's, in strings and in object keys (rule test labels).
local presets = {
  otel: {
    duration: 'http_server_request_duration_seconds',
    active: 'http_server_active_requests',
    requestSize: 'http_server_request_body_size_bytes',
    responseSize: 'http_server_response_body_size_bytes',
    objective: 'http_server_objective_ratio',
    method: 'http_request_method',
    status: 'http_response_status_code',
    route: 'http_route',
    // Connection metrics (Metrics::listener).
    openConnections: 'http_server_open_connections',
    connectionDuration: 'http_server_connection_duration_seconds',
    acceptErrors: 'http_server_accept_errors_total',
    rejectedConnections: 'http_server_rejected_connections_total',
    connectionLimit: 'http_server_connection_limit',
  },
  promclient: {
    duration: 'http_request_duration_seconds',
    active: 'http_requests_in_flight',
    requestSize: 'http_request_size_bytes',
    responseSize: 'http_response_size_bytes',
    objective: 'http_request_objective_ratio',
    method: 'method',
    status: 'status_code',
    route: 'route',
    openConnections: 'http_open_connections',
    connectionDuration: 'http_connection_duration_seconds',
    acceptErrors: 'http_accept_errors_total',
    rejectedConnections: 'http_rejected_connections_total',
    connectionLimit: 'http_connection_limit',
  },
};

// Longest names first, so that no name is replaced inside a longer one.
local order = [
  'duration',
  'active',
  'requestSize',
  'responseSize',
  'objective',
  'method',
  'status',
  'route',
  'openConnections',
  'connectionDuration',
  'acceptErrors',
  'rejectedConnections',
  'connectionLimit',
];

local renameString(naming, s) =
  std.foldl(function(acc, k) std.strReplace(acc, presets.otel[k], presets[naming][k]), order, s);

local rename(naming, v) =
  if naming == 'otel' then v
  else if std.isString(v) then renameString(naming, v)
  else if std.isArray(v) then [rename(naming, x) for x in v]
  else if std.isObject(v) then { [renameString(naming, k)]: rename(naming, v[k]) for k in std.objectFields(v) }
  else v;

{
  presets: presets,
  rename: rename,
}
