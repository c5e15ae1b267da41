//! An invoicing API on axum and SQLite, instrumented with `tower-prometheus`: the example
//! to copy when wiring the crate into a real service. See `README.md` beside this crate
//! for how to run it and every endpoint.
//!
//! - [`app`] builds the whole service from an [`AppState`], so that tests drive it with
//!   `tower::ServiceExt::oneshot`, without a socket; `main.rs` only reads the
//!   configuration, opens the state and serves [`app`] until SIGTERM or Ctrl-C.
//! - [`error::AppError`] is the one error type; every error response has the same JSON
//!   shape.
//! - Each module of [`routes`] owns its `Router`.
//! - [`telemetry`] puts the business metrics and the HTTP metrics on one registry.

#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, clippy::all)]

pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod model;
pub mod money;
pub mod outbox;
pub mod pdf;
pub mod pdp;
pub mod routes;
pub mod serve;
pub mod telemetry;
pub mod validate;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::{from_fn, map_response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyDeadlineLayer, TimeoutLayer};

use crate::config::Config;
use crate::db::Db;
use crate::telemetry::Telemetry;

/// What every handler shares. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The configuration the service started with.
    pub config: Arc<Config>,
    /// The metrics.
    pub telemetry: Telemetry,
    /// The outbox of the submissions to the PDP and the task that sends them, when
    /// `PDP_ADDR` is set.
    pub outbox: Option<outbox::Outbox>,
}

impl AppState {
    /// Creates the folders, opens the database (running the migrations), registers the
    /// metrics and, with a PDP, starts the task that submits the issued invoices to it
    /// ([`outbox`]), as `config` says.
    pub async fn open(config: Config) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        for dir in [&config.uploads_dir, &config.pdf_dir] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        }
        let removed = routes::attachments::remove_partial_uploads(&config.uploads_dir)
            .await
            .map_err(|error| format!("cannot clean {}: {error}", config.uploads_dir.display()))?;
        if removed > 0 {
            tracing::warn!(removed, "removed uploads cut off by a crash");
        }
        let telemetry = Telemetry::new(
            config.metrics_enabled,
            config.metrics_naming.into(),
            config.slow_poll_threshold,
            config.otlp_endpoint.is_some(),
        )?;
        let db = Db::connect(&config.database_url, telemetry.business.clone()).await?;
        let outbox = match &config.pdp_addr {
            Some(addr) => {
                let pdp = pdp::Pdp::new(addr, config.pdp_timeout, telemetry.http.as_ref())?;
                let settings = outbox::Settings {
                    timeout: config.pdp_timeout,
                    retry_max: config.pdp_retry_max,
                    // Never up to REQUEST_TIMEOUT: a 503 after the commit would tell the
                    // client that the invoice was not created.
                    answer_wait: (config.pdp_timeout + outbox::ANSWER_MARGIN)
                        .min(config.serve.request_timeout / 2),
                };
                Some(outbox::Outbox::start(
                    db.clone(),
                    pdp,
                    telemetry.business.clone(),
                    settings,
                ))
            }
            None => None,
        };
        Ok(Self {
            db,
            outbox,
            config: Arc::new(config),
            telemetry,
        })
    }
}

/// The whole HTTP service.
///
/// Layers, from the outside in: request id (`x-request-id`, generated when absent, sent
/// back), tracing (a span per request with its id and route template, a line per
/// response with status and latency), HTTP metrics (unless disabled), non-JSON error
/// responses (axum's 405, `ServeDir`'s 404, the timeout's 503) given the JSON error
/// shape, panics turned into JSON 500s, the time to answer (`REQUEST_TIMEOUT`, 503), the
/// handling of clients gone mid-request ([`error::abandon_if_client_gone`]), and the time
/// to send the body (`REQUEST_BODY_TIMEOUT`, 408).
///
/// `/metrics` is served on its own listener ([`metrics_app`], `METRICS_ADDR`, by
/// default), or here with `METRICS_ADDR=api`; `/metrics` and `/health` are excluded from
/// the HTTP metrics.
pub fn app(state: AppState) -> Router {
    let limits = state.config.serve;
    let mut router = Router::new()
        .merge(routes::health::router())
        .merge(routes::parties::sellers())
        .merge(routes::parties::clients())
        .merge(routes::invoices::router())
        .merge(routes::attachments::router(&state.config))
        .merge(routes::files::router(&state.config))
        .fallback(error::not_found);
    let metrics = state.telemetry.http.clone();
    let exporter_here = metrics
        .as_ref()
        .filter(|_| state.config.metrics_addr == config::MetricsAddr::Api);
    if let Some(metrics) = exporter_here {
        router = router.route_service("/metrics", metrics.exporter());
    }
    let router = router
        .layer(RequestBodyDeadlineLayer::new(limits.request_body_timeout))
        .layer(from_fn(error::abandon_if_client_gone))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(map_response(error::json_errors));
    let router = match metrics {
        Some(metrics) => router.layer(metrics.http_layer()),
        None => router,
    };
    router
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(telemetry::trace_layer())
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// The service of the separate metrics listener (`METRICS_ADDR`): `/metrics` only.
pub fn metrics_app(metrics: &tower_prometheus::Metrics) -> Router {
    Router::new()
        .route_service("/metrics", metrics.exporter())
        .fallback(error::not_found)
        .layer(map_response(error::json_errors))
}
