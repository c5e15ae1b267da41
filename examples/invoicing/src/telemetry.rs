//! Metrics and logs.
//!
//! One `prometheus-client` [`Registry`] holds the business metrics below; it is handed to
//! [`tower_prometheus::Metrics::builder`], which adds the HTTP metrics (and its default
//! collectors) to it, so that one `/metrics` serves them all.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `invoicing_invoices_created_total` | counter | `status` | invoices created, by status at creation |
//! | `invoicing_db_query_duration_seconds` | histogram | `operation` | time of each database operation (a transaction counts as one) |
//! | `invoicing_attachments_stored_bytes_total` | counter | | bytes of attachments written to `UPLOADS_DIR` |
//! | `invoicing_build_info` | gauge | `version` | always 1; the version of the running binary |
//! | `invoicing_pdp_submissions_pending` | gauge | | PDP submissions not answered yet, in the database (replicas sharing it all report the same count) |
//! | `invoicing_pdp_submissions_oldest_pending_timestamp_seconds` | gauge | | when the oldest PDP submission not answered yet was queued (Unix seconds); 0 when none is pending |
//! | `invoicing_pdp_submission_retries_total` | counter | | attempts of a PDP submission that got no decision (unreachable, deadline exceeded, …) and were scheduled again |
//! | `invoicing_pdp_submissions_answered_total` | counter | `code` | PDP submissions answered, by the code of the PDP's answer (`OK`, `ALREADY_EXISTS`, `INVALID_ARGUMENT`, …) |

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::Request;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, MakeSpan};
use tower_http::{LatencyUnit, trace::TraceLayer};
use tower_prometheus::{Buckets, CurrentSpan, Histogram, Metrics, Traceparent};
use tower_prometheus::{HttpMetricsLayer, Naming, Objective};
use tracing::{Level, Span};

/// The version reported by `invoicing_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `status` label of `invoicing_invoices_created_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `draft`, `issued`, `paid` or `cancelled`.
    pub status: &'static str,
}

/// The `operation` label of `invoicing_db_query_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// What the database did: `insert_invoice`, `list_sellers`…
    pub operation: &'static str,
}

/// The `code` label of `invoicing_pdp_submissions_answered_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The gRPC status code of the PDP's answer, as the specification spells it.
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Database operations take from tens of microseconds (a read by id) to tens of
/// milliseconds (a write waiting for the lock); the HTTP buckets start too high.
fn db_histogram() -> Histogram {
    Histogram::new(
        Buckets::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0,
        ])
        .expect("the bounds are finite and increasing"),
    )
}

/// The application's own metrics. Cloning gives handles on the same series.
#[derive(Clone, Debug)]
pub struct BusinessMetrics {
    invoices_created: Family<StatusLabel, Counter>,
    db_query_duration: HistogramFamily<OperationLabel>,
    attachments_stored_bytes: Counter,
    pdp_submissions_pending: Gauge,
    pdp_submissions_oldest_pending: Gauge<f64, AtomicU64>,
    pdp_submission_retries: Counter,
    pdp_submissions_answered: Family<CodeLabel, Counter>,
}

impl BusinessMetrics {
    /// Registers the metrics in `registry`, under the `invoicing_` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("invoicing");
        let metrics = Self {
            invoices_created: Family::default(),
            db_query_duration: Family::new_with_constructor(db_histogram),
            attachments_stored_bytes: Counter::default(),
            pdp_submissions_pending: Gauge::default(),
            pdp_submissions_oldest_pending: Gauge::default(),
            pdp_submission_retries: Counter::default(),
            pdp_submissions_answered: Family::default(),
        };
        registry.register(
            "invoices_created",
            "Invoices created, by status at creation",
            metrics.invoices_created.clone(),
        );
        registry.register_with_unit(
            "db_query_duration",
            "Duration of database operations, a transaction counting as one",
            Unit::Seconds,
            metrics.db_query_duration.clone(),
        );
        registry.register_with_unit(
            "attachments_stored",
            "Bytes of attachments stored",
            Unit::Bytes,
            metrics.attachments_stored_bytes.clone(),
        );
        registry.register(
            "pdp_submissions_pending",
            "PDP submissions not answered yet, in the database (shared by the replicas that share it)",
            metrics.pdp_submissions_pending.clone(),
        );
        registry.register_with_unit(
            "pdp_submissions_oldest_pending_timestamp",
            "When the oldest PDP submission not answered yet was queued, in Unix time; 0 when none is pending",
            Unit::Seconds,
            metrics.pdp_submissions_oldest_pending.clone(),
        );
        registry.register(
            "pdp_submission_retries",
            "Attempts of a PDP submission that got no decision and were scheduled again",
            metrics.pdp_submission_retries.clone(),
        );
        registry.register(
            "pdp_submissions_answered",
            "PDP submissions answered, by the code of the answer kept on the invoice",
            metrics.pdp_submissions_answered.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel { version: VERSION })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label tells which build runs",
            build_info,
        );
        metrics
    }

    /// Counts an invoice created with this status.
    pub fn invoice_created(&self, status: &'static str) {
        self.invoices_created
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    /// Counts attachment bytes written.
    pub fn attachment_stored(&self, bytes: u64) {
        self.attachments_stored_bytes.inc_by(bytes);
    }

    /// Sets the number of PDP submissions not answered yet, and when the oldest of them
    /// was queued (Unix seconds; `None` when there is none).
    pub fn set_pdp_submissions_pending(&self, pending: i64, oldest: Option<f64>) {
        self.pdp_submissions_pending.set(pending);
        self.pdp_submissions_oldest_pending
            .set(oldest.unwrap_or(0.0));
    }

    /// Counts an attempt of a PDP submission scheduled again.
    pub fn pdp_submission_retried(&self) {
        self.pdp_submission_retries.inc();
    }

    /// Counts a PDP submission answered with this code.
    pub fn pdp_submission_answered(&self, code: &'static str) {
        self.pdp_submissions_answered
            .get_or_create(&CodeLabel { code })
            .inc();
    }

    /// Runs `operation` and records its duration under `name`, whatever its outcome.
    pub async fn time_db<T>(&self, name: &'static str, operation: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let output = operation.await;
        self.db_query_duration
            .get_or_create(&OperationLabel { operation: name })
            .observe(start.elapsed().as_secs_f64());
        output
    }
}

/// Every metric of the service: the business metrics, and (unless metrics are disabled)
/// the HTTP layer and exporter of `tower-prometheus` on the same registry.
#[derive(Clone, Debug)]
pub struct Telemetry {
    /// The application's own metrics.
    pub business: BusinessMetrics,
    /// The HTTP metrics and the exporter; `None` with `METRICS_ENABLED=false`.
    pub http: Option<Metrics>,
}

impl Telemetry {
    /// A fresh registry with the business metrics, and the HTTP metrics when `enabled`,
    /// named after `naming`.
    ///
    /// `/metrics` and `/health` are excluded from the HTTP metrics: scrapes and probes
    /// would otherwise outnumber real traffic on a quiet service.
    ///
    /// Per-route task metrics are on (`task_monitors`), with slow polls from
    /// `slow_poll_threshold`: they tell which route blocks the runtime.
    ///
    /// The routes' service level objectives are [`OBJECTIVES`].
    ///
    /// The duration buckets keep exemplars: the request's own span when `spans_exported`
    /// (tower-prometheus's `CurrentSpan`, which needs the tracing layer outside the
    /// metrics layer, as [`crate::app`] puts them), else a caller's sampled `traceparent`.
    pub fn new(
        enabled: bool,
        naming: Naming,
        slow_poll_threshold: std::time::Duration,
        spans_exported: bool,
    ) -> Result<Self, tower_prometheus::Error> {
        let mut registry = Registry::default();
        let business = BusinessMetrics::register(&mut registry);
        let http = if enabled {
            let mut layer = HttpMetricsLayer::builder().naming(naming);
            layer = if spans_exported {
                layer.trace_context(CurrentSpan)
            } else {
                layer.trace_context(Traceparent)
            };
            for (route, objective) in OBJECTIVES {
                layer = layer.objective(route, objective);
            }
            Some(
                Metrics::builder()
                    .registry(registry)
                    .http(
                        layer
                            .exclude_path("/metrics")
                            .exclude_path("/health")
                            // `nest_service` mounts: axum gives their requests no
                            // `MatchedPath`; these give them `/uploads/{*path}`.
                            .nested_service("/uploads")
                            .nested_service("/pdf-a3")
                            .task_monitors(true)
                            .slow_poll_threshold(slow_poll_threshold)
                            // Native buckets for a Prometheus that asks for protobuf,
                            // and exemplars (their trace: above).
                            .native_histograms(true)
                            .exemplars(true),
                    )
                    .build()?,
            )
        } else {
            None
        };
        Ok(Self { business, http })
    }
}

/// What the service promises, per route template: published as
/// `http_server_objective_ratio` series, from which `monitoring/`'s generic SLO rules
/// compute error ratios and burn-rate alerts. Latency thresholds are bounds of the default
/// duration buckets. Routes not listed (sellers, clients, the static files) have none.
pub const OBJECTIVES: [(&str, Objective); 7] = [
    // The invoice list and creation: what the front end calls most.
    ("/api/invoices", Objective::availability(0.999)),
    (
        "/api/invoices",
        Objective::latency(0.99, std::time::Duration::from_millis(250)),
    ),
    // One invoice, read, updated or deleted.
    ("/api/invoices/{id}", Objective::availability(0.999)),
    (
        "/api/invoices/{id}",
        Objective::latency(0.99, std::time::Duration::from_millis(100)),
    ),
    // PDF/A-3 generation: CPU work, slower and allowed to fail more.
    ("/api/invoices/{id}/pdf", Objective::availability(0.99)),
    (
        "/api/invoices/{id}/pdf",
        Objective::latency(0.95, std::time::Duration::from_millis(2500)),
    ),
    // Attachments: uploads hit the disk.
    (
        "/api/invoices/{id}/attachments",
        Objective::availability(0.99),
    ),
];

/// The service's traces, when they are exported: flushed and stopped by [`Self::shutdown`].
#[derive(Debug)]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// Exports the spans still buffered, then stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "the last spans were not all exported");
        }
    }
}

/// Logs to stdout, filtered by `RUST_LOG` (default `info`); with an OTLP endpoint
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, gRPC, e.g. `http://tempo:4317`), the spans too, through
/// tracing-opentelemetry and the OpenTelemetry SDK (service name `invoicing`; sampling as
/// `OTEL_TRACES_SAMPLER` says, by default a caller's decision or every trace). Without
/// one, nothing is exported and the OpenTelemetry layer is not installed. Must run inside
/// the Tokio runtime: the exporter's channel is spawned on it.
pub fn init_tracing(otlp_endpoint: Option<&str>) -> Result<Traces, String> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal());
    let provider = match otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|error| format!("OTLP exporter to {endpoint}: {error}"))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("invoicing")
                            .build(),
                    )
                    .build(),
            )
        }
        None => None,
    };
    // Spans at `info` and above, whatever `RUST_LOG` keeps of the logs: the request spans
    // are exported (and name the exemplars) with `RUST_LOG=warn` too, and the libraries'
    // `debug` and `trace` spans (hyper's, h2's) are not.
    let spans = provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("invoicing"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(spans)
        .with(logs.with_filter(filter))
        .try_init()
        .map_err(|error| format!("cannot install the tracing subscriber: {error}"))?;
    Ok(Traces { provider })
}

/// Reads a caller's trace context from the request headers (W3C `traceparent`).
struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The static folders, mounted with `nest_service`, and their route templates.
const STATIC_MOUNTS: [(&str, &str); 2] = [
    ("/uploads/", "/uploads/{*path}"),
    ("/pdf-a3/", "/pdf-a3/{*path}"),
];

/// The route template of a request, for logs, as the metrics name it: axum's
/// [`MatchedPath`], or the template of the static folder the path is under.
///
/// axum 0.8 sets no `MatchedPath` on requests routed to a `nest_service` (such as the
/// `ServeDir` of `/uploads`); the metrics layer names them with `nested_service`, and
/// this names them the same way in logs: `/uploads/{*path}` and `/pdf-a3/{*path}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteTemplate;

impl RouteTemplate {
    /// The template of `request`, or `None` when it matched no route.
    pub fn of<B>(request: &Request<B>) -> Option<&str> {
        if let Some(matched) = request.extensions().get::<MatchedPath>() {
            return Some(matched.as_str());
        }
        let path = request.uri().path();
        STATIC_MOUNTS
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, template)| *template)
    }
}

/// The span of a request: method, path, route template and request id, so that every log
/// line of the request carries them; exported (with an OTLP endpoint) as the request's
/// server span, named `METHOD route`, continuing the caller's trace when a `traceparent`
/// came.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        use opentelemetry::propagation::TextMapPropagator as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;

        let route = RouteTemplate::of(request);
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok());
        let span = tracing::info_span!(
            "request",
            otel.kind = "server",
            otel.name = %format_args!("{} {}", request.method(), route.unwrap_or("")),
            method = %request.method(),
            path = request.uri().path(),
            route,
            http.route = route,
            request_id,
        );
        let caller = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&HeaderExtractor(request.headers()));
        // Not an OpenTelemetry span (no OTLP endpoint, or filtered out): nothing to
        // continue.
        let _ = span.set_parent(caller);
        span
    }
}

/// The tracing layer: a span per request, one `info` line per response with its status
/// and latency, an `error` line per 5xx.
pub fn trace_layer() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    RequestSpan,
    tower_http::trace::DefaultOnRequest,
    DefaultOnResponse,
> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_response(
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(LatencyUnit::Micros),
        )
        .on_failure(DefaultOnFailure::new().latency_unit(LatencyUnit::Micros))
}
