//! Submitting issued invoices to the PDP (`examples/pdp`), over gRPC, through
//! `tower_prometheus`'s client layer: each call is in `rpc_client_call_duration_seconds`
//! with the PDP's status code, or the `error_type` of a refused connection or an expired
//! deadline. Submissions are queued and retried by [`crate::outbox`]; this module makes
//! one attempt and says whether its outcome is the PDP's decision or a failure to retry.

use std::time::Duration;

use pdp::proto::SubmitInvoiceRequest;
use pdp::proto::pdp_client::PdpClient;
use tonic::transport::Channel;
use tower_prometheus::Metrics;
use tower_prometheus::client_metrics::ClientMetrics;

use crate::outbox::Submission;

/// A client of the PDP. Cloning is cheap: clones share the connection.
#[derive(Clone, Debug)]
pub struct Pdp {
    client: PdpClient<ClientMetrics<Channel>>,
    timeout: Duration,
}

impl Pdp {
    /// A client of the PDP at `addr` (`host:port`), connecting on first use, each call
    /// with a deadline of `timeout`, recorded into `metrics` (into metrics nobody serves
    /// when they are disabled).
    pub fn new(
        addr: &str,
        timeout: Duration,
        metrics: Option<&Metrics>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|error| format!("PDP_ADDR={addr}: {error}"))?
            .connect_lazy();
        let unserved;
        let metrics = match metrics {
            Some(metrics) => metrics,
            None => {
                unserved = Metrics::new();
                &unserved
            }
        };
        let layer = metrics.client_layer().server_address(addr);
        let channel = tower::Layer::layer(&layer, channel);
        Ok(Self {
            client: PdpClient::new(channel),
            timeout,
        })
    }

    /// One attempt to submit an issued invoice, with its submission key.
    pub async fn submit(&self, invoice: &Submission) -> Attempt {
        let mut request = tonic::Request::new(SubmitInvoiceRequest {
            seller_siret: invoice.seller_siret.clone(),
            number: invoice.number.clone(),
            issue_date: invoice.issue_date.clone(),
            currency: invoice.currency.clone(),
            total_gross_cents: invoice.total_gross_cents,
            client_name: invoice.client_name.clone(),
            submission_key: invoice.submission_key.clone(),
        });
        request.set_timeout(self.timeout);
        match self.client.clone().submit_invoice(request).await {
            Ok(reply) => Attempt::Answered {
                code: "OK",
                answer: format!("SUBMITTED {}", reply.into_inner().submission_id),
            },
            Err(status) => {
                let code = code_name(status.code());
                let text = format!("{code}: {}", status.message());
                if is_decision(status.code()) {
                    Attempt::Answered { code, answer: text }
                } else {
                    Attempt::Failed { code, error: text }
                }
            }
        }
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The PDP decided on the invoice: what to keep on it (`SUBMITTED sub-7`,
    /// `ALREADY_EXISTS: …`), and the code of the answer (`OK`, `ALREADY_EXISTS`).
    Answered {
        /// The gRPC status code, as the specification spells it.
        code: &'static str,
        /// The answer, as shown in `pdp_status`.
        answer: String,
    },
    /// No decision (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, …): the attempt is to be made
    /// again.
    Failed {
        /// The gRPC status code, as the specification spells it.
        code: &'static str,
        /// The code and message (`UNAVAILABLE: tcp connect error`).
        error: String,
    },
}

/// Whether a status is the PDP's decision on the invoice, which another attempt would not
/// change: a refusal of the invoice itself. Every other code says that the PDP did not
/// decide (it was not reached, did not answer in time, was overloaded or failed, or is
/// not the PDP: `UNIMPLEMENTED`, `UNAUTHENTICATED`); those are retried, which the
/// submission key makes safe.
pub fn is_decision(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        InvalidArgument | AlreadyExists | FailedPrecondition | OutOfRange
    )
}

/// A code as the gRPC specification spells it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
