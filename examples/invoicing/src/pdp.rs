//! Submitting issued invoices to the PDP (`examples/pdp`), over gRPC, through
//! `tower_prometheus`'s client layer: each call is in `rpc_client_call_duration_seconds`
//! with the PDP's status code, or the `error_type` of a refused connection or an expired
//! deadline.

use std::time::Duration;

use pdp::proto::SubmitInvoiceRequest;
use pdp::proto::pdp_client::PdpClient;
use tonic::transport::Channel;
use tower_prometheus::Metrics;
use tower_prometheus::client_metrics::ClientMetrics;

use crate::model::invoice::Submission;

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

    /// Submits an issued invoice; the PDP's answer as shown on the invoice:
    /// `SUBMITTED sub-1`, or the status code and message of a refusal or failure
    /// (`INVALID_ARGUMENT: seller_siret: 14 digits`, `UNAVAILABLE: …`).
    pub async fn submit(&self, invoice: Submission) -> String {
        let mut request = tonic::Request::new(SubmitInvoiceRequest {
            seller_siret: invoice.seller_siret,
            number: invoice.number,
            issue_date: invoice.issue_date,
            currency: invoice.currency,
            total_gross_cents: invoice.total_gross_cents,
            client_name: invoice.client_name,
        });
        request.set_timeout(self.timeout);
        match self.client.clone().submit_invoice(request).await {
            Ok(reply) => format!("SUBMITTED {}", reply.into_inner().submission_id),
            Err(status) => format!("{}: {}", code_name(status.code()), status.message()),
        }
    }
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
