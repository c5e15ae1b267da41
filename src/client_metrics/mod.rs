//! The client layer: the duration of outgoing HTTP requests and gRPC calls, by server.
//!
//! [`ClientMetricsLayer`] (from [`Metrics::client_layer`](crate::Metrics::client_layer))
//! wraps a tower client of `http::Request`s: a tonic `Channel`, hyper-util's legacy
//! `Client`, any `tower::Service<http::Request<B>>` answering `http::Response`s. It
//! records, with the OpenTelemetry client conventions:
//!
//! - gRPC calls (`content-type: application/grpc*`) in `rpc_client_call_duration_seconds`,
//!   labelled `rpc_system_name="grpc"`, `rpc_method` (`package.Service/Method`),
//!   `server_address`, `server_port`, `rpc_response_status_code` and, for every code but
//!   `OK`, `error_type`;
//! - other requests in `http_client_request_duration_seconds`, labelled
//!   `http_request_method`, `server_address`, `server_port`, `http_response_status_code`
//!   (when a response came) and `error_type` (statuses of 400 and more, and errors).
//!
//! A call lasts until the response body ended (the trailers of a gRPC call: the status
//! is read there, or in a trailers-only head), as on the server side; a response future
//! or body the caller drops is `error_type="cancelled"` (`CANCELLED` for gRPC).
//!
//! # Errors
//!
//! The inner service's errors are classified by [`ClientErrors`] unless
//! [`classify`](ClientMetricsLayer::classify) gives another
//! [`Classify`](crate::http_metrics::Classify): `connection_refused`, `connect_error`,
//! `timeout`, `connection_closed`, `connection_error`, `keepalive_timeout`, a gRPC code
//! found in the chain, `_OTHER`, read from the error's `source()` chain without depending
//! on tonic, hyper or hyper-util (see [`ClientErrors`]). A gRPC call that failed so gets
//! the code tonic's client returns for that error: `UNAVAILABLE` when the connection could
//! not be made, `CANCELLED` when it closed before the call was answered, `UNKNOWN` when
//! it broke with the call in flight, `DEADLINE_EXCEEDED` for timeouts (where tonic says
//! `CANCELLED`; see below). The layer's service returns the inner error boxed
//! (`Box<dyn Error + Send + Sync>`, what tower's middleware returns): tonic's clients take
//! it as they are, and the original error is a `downcast_ref` away.
//!
//! # Deadlines
//!
//! A gRPC call's deadline is its `grpc-timeout` header (tonic's `Request::set_timeout`).
//! A call past it is `DEADLINE_EXCEEDED`, as its server records it, however the client
//! gave up: tonic's `Channel` timer (inside the layer: its error is `timeout`), a timer of
//! the caller outside the layer (the call is dropped), or none (the server ends the call:
//! tonic's server answers its own timeout `CANCELLED`). The same tolerance as the
//! server's applies: a call dropped within a tenth of the timeout (at most 20 ms) before
//! it counts as past it, since a timer outside the layer started first. Other timeouts
//! (`tower::timeout`, tonic's `Endpoint::timeout`) are seen as `timeout` inside the
//! layer; outside it, a call they drop before its `grpc-timeout` is `cancelled`
//! (`CANCELLED`).
//!
//! # Server address and port
//!
//! From the request URI's authority (hyper-util's client requests carry one); the port
//! is the URI's, else 80 or 443 by scheme. A tonic client made with `new(channel)` sends
//! path-only URIs (the `Channel` adds its origin below the layer): name the server with
//! [`server_address`](ClientMetricsLayer::server_address), or make the client with
//! `with_origin`. These labels take the servers the program is configured to call, a
//! bounded set: never put a layer in front of a client that follows user-given URLs
//! (each host would be a series until the cardinality limit sends the rest to the
//! overflow series).
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower::ServiceBuilder;
//! use tower_prometheus::Metrics;
//!
//! let metrics = Metrics::new();
//! let channel = tonic::transport::Channel::from_static("http://pdp.internal:50051").connect_lazy();
//! let channel = ServiceBuilder::new()
//!     .layer(metrics.client_layer().server_address("pdp.internal:50051"))
//!     .service(channel);
//! // let client = PdpClient::new(channel);
//! # let _ = channel; Ok(()) }
//! ```

mod classify;
mod family;
mod future;
mod layer;
mod service;

pub use classify::ClientErrors;
pub(crate) use family::FAMILIES;
pub use future::BoxErrors;
pub use layer::ClientMetricsLayer;
pub use service::ClientMetrics;
