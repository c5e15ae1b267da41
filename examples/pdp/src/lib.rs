//! A stand-in for the PDP (the certified e-invoicing platform issued invoices are
//! submitted to): a tonic gRPC service, instrumented with `tower-prometheus` on both the
//! HTTP layer (which records its calls in `rpc_server_call_duration_seconds`) and
//! `/metrics`, served on the same port as the gRPC services (HTTP/1.1 for Prometheus'
//! scrapes, HTTP/2 for gRPC).
//!
//! - `pdp.v1.Pdp/SubmitInvoice` (unary) validates an issued invoice: `INVALID_ARGUMENT`
//!   for one it refuses (a SIRET that is not 14 digits, no number, a date that is not
//!   `YYYY-MM-DD`, a currency that is not 3 capitals, a negative total), `ALREADY_EXISTS`
//!   for one already submitted (same SIRET and number); else a submission id. Calls are
//!   idempotent by their `submission_key`: a call with a key already seen gets the answer
//!   the first call with that key got (a client that retried after a lost answer gets
//!   its submission id, not `ALREADY_EXISTS`), or `INVALID_ARGUMENT` if the key came
//!   with another invoice.
//! - `pdp.v1.Pdp/WatchLifecycle` (server streaming) streams a submission's statuses,
//!   `SUBMITTED`, `RECEIVED`, then `ACCEPTED` (or `REJECTED` for a total of 0), a step
//!   apart; `NOT_FOUND` for an unknown submission.
//! - `grpc.health.v1.Health` and server reflection (`grpc.reflection.v1`), as gRPC users
//!   expect (`grpcurl -plaintext 127.0.0.1:50051 list`).

#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, clippy::all)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tower_prometheus::{HttpMetricsLayer, Metrics};

/// The generated messages, client and server of `proto/pdp.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("pdp.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("pdp_descriptor");
}

use proto::pdp_server::{Pdp, PdpServer};
use proto::{
    Lifecycle, LifecycleEvent, SubmitInvoiceReply, SubmitInvoiceRequest, WatchLifecycleRequest,
};

/// The PDP's submissions, in memory.
#[derive(Debug, Clone)]
pub struct PdpService {
    state: Arc<Mutex<State>>,
    step: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// Submission ids to their final status.
    submissions: HashMap<String, Lifecycle>,
    /// (SIRET, number) of every invoice submitted.
    seen: HashSet<(String, String)>,
    /// Submission keys to the invoice first sent with them and the answer it got. Kept
    /// for the life of the process, as the rest of this stand-in's state.
    keys: HashMap<String, Keyed>,
}

/// What a submission key was first used for.
#[derive(Debug)]
struct Keyed {
    /// (SIRET, number) of the invoice.
    invoice: (String, String),
    /// The answer: a submission id, or a refusal's code and message.
    answer: Result<String, (tonic::Code, String)>,
}

impl PdpService {
    /// A PDP with no submissions, whose lifecycle streams send a status every `step`.
    pub fn new(step: Duration) -> Self {
        Self {
            state: Arc::default(),
            step,
        }
    }
}

/// Why an invoice is refused, if it is.
fn invalid(invoice: &SubmitInvoiceRequest) -> Option<&'static str> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let date = invoice.issue_date.as_bytes();
    if !digits(&invoice.seller_siret, 14) {
        Some("seller_siret: 14 digits")
    } else if invoice.number.is_empty() || invoice.number.len() > 64 {
        Some("number: 1 to 64 characters")
    } else if !(date.len() == 10
        && date[4] == b'-'
        && date[7] == b'-'
        && digits(&invoice.issue_date[..4], 4)
        && digits(&invoice.issue_date[5..7], 2)
        && digits(&invoice.issue_date[8..], 2))
    {
        Some("issue_date: YYYY-MM-DD")
    } else if !(invoice.currency.len() == 3
        && invoice.currency.bytes().all(|b| b.is_ascii_uppercase()))
    {
        Some("currency: an ISO 4217 code")
    } else if invoice.total_gross_cents < 0 {
        Some("total_gross_cents: not negative")
    } else {
        None
    }
}

/// What makes two invoices the same for the PDP: (SIRET, number).
fn identity(invoice: &SubmitInvoiceRequest) -> (String, String) {
    (invoice.seller_siret.clone(), invoice.number.clone())
}

impl State {
    /// Registers a new submission: its id, or why it is refused.
    fn submit(&mut self, invoice: &SubmitInvoiceRequest) -> Result<String, (tonic::Code, String)> {
        if let Some(reason) = invalid(invoice) {
            return Err((tonic::Code::InvalidArgument, reason.to_owned()));
        }
        if !self.seen.insert(identity(invoice)) {
            return Err((
                tonic::Code::AlreadyExists,
                format!(
                    "invoice {} of {} was already submitted",
                    invoice.number, invoice.seller_siret
                ),
            ));
        }
        let id = format!("sub-{}", self.submissions.len() + 1);
        let last = if invoice.total_gross_cents == 0 {
            Lifecycle::Rejected
        } else {
            Lifecycle::Accepted
        };
        self.submissions.insert(id.clone(), last);
        Ok(id)
    }
}

type LifecycleStream = Pin<Box<dyn Stream<Item = Result<LifecycleEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Pdp for PdpService {
    async fn submit_invoice(
        &self,
        request: Request<SubmitInvoiceRequest>,
    ) -> Result<Response<SubmitInvoiceReply>, Status> {
        let invoice = request.into_inner();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let key = invoice.submission_key.clone();
        let answer = match state.keys.get(&key).filter(|_| !key.is_empty()) {
            Some(first) if first.invoice != identity(&invoice) => Err((
                tonic::Code::InvalidArgument,
                format!(
                    "submission_key: already used for invoice {} of {}",
                    first.invoice.1, first.invoice.0
                ),
            )),
            Some(first) => first.answer.clone(),
            None => {
                let answer = state.submit(&invoice);
                if !key.is_empty() {
                    state.keys.insert(
                        key,
                        Keyed {
                            invoice: identity(&invoice),
                            answer: answer.clone(),
                        },
                    );
                }
                answer
            }
        };
        match answer {
            Ok(id) => Ok(Response::new(SubmitInvoiceReply {
                submission_id: id,
                status: Lifecycle::Submitted.into(),
            })),
            Err((code, message)) => Err(Status::new(code, message)),
        }
    }

    type WatchLifecycleStream = LifecycleStream;

    async fn watch_lifecycle(
        &self,
        request: Request<WatchLifecycleRequest>,
    ) -> Result<Response<LifecycleStream>, Status> {
        let id = request.into_inner().submission_id;
        let last = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.submissions.get(&id).copied()
        };
        let Some(last) = last else {
            return Err(Status::not_found(format!("no submission {id}")));
        };
        let step = self.step;
        let statuses = [Lifecycle::Submitted, Lifecycle::Received, last];
        let stream = tokio_stream::StreamExt::then(tokio_stream::iter(statuses), move |status| {
            let id = id.clone();
            async move {
                tokio::time::sleep(step).await;
                Ok(LifecycleEvent {
                    submission_id: id,
                    status: status.into(),
                })
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The metrics of a PDP: `/metrics` itself is not recorded.
pub fn metrics() -> Metrics {
    Metrics::builder()
        .http(HttpMetricsLayer::builder().exclude_path("/metrics"))
        .build()
        .expect("valid options")
}

/// Serves the PDP, health checking, reflection and `/metrics` on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    service: PdpService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<PdpServer<PdpService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let scrape = axum::Router::new().route_service("/metrics", metrics.exporter());
    let routes = tonic::service::Routes::from(scrape)
        .add_service(PdpServer::new(service))
        .add_service(health_service)
        .add_service(reflection);
    tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(metrics.http_layer())
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}
