//! Exemplars from the spans the service records itself: [`CurrentSpan`], the
//! OpenTelemetry span of the request's `tracing` span (feature `opentelemetry`).

use http::{Extensions, HeaderMap};
use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt as _;

use super::{TRACEPARENT, TraceContext, TraceContextSource};

/// A [`TraceContextSource`] that names the span this service recorded for the request:
/// the OpenTelemetry span of the request's `tracing` span, as `tracing-opentelemetry`
/// (0.34, over `opentelemetry` 0.33) exports it, when it is sampled.
///
/// An edge service, which starts the trace itself, gets exemplars with it (the
/// [`Traceparent`](super::Traceparent) source has no header to read there), and where a
/// caller sent a `traceparent`, the exemplar names the caller's trace and *this*
/// service's span, not the caller's.
///
/// # Where it finds the span
///
/// 1. An [`opentelemetry::Context`] in the request's extensions, if a layer in front of
///    the metrics layer put the request's context there.
/// 2. Otherwise the current `tracing` span, read through `tracing-opentelemetry`: the
///    span a tracing layer (tower-http's `TraceLayer`, or another that enters its span
///    while it calls the service inside it) made for the request. tonic's
///    `Server::trace_fn` span is entered only while the response is polled, not in
///    `call`: give tonic a tower-http `TraceLayer` instead.
///
/// The span's ids are taken only if it is valid and sampled: an unsampled span gives no
/// exemplar, as it gives no exported span.
///
/// # The one order that works
///
/// The tracing layer goes **outside** the metrics layer, so that the request's span is
/// current when the metrics layer sees the request: with axum, `.layer(metrics)` first,
/// then `.layer(trace)` (the last `layer` is the outermost); with tower's
/// `ServiceBuilder`, the trace layer first.
///
/// In the other order, the request's span does not exist yet when the metrics layer is
/// called (the tracing layer makes it later, inside), so there is no span to name: no
/// exemplar, never another span's. What can be current then is a span entered around
/// the whole server, if the application enters one (a span instrumenting each
/// connection's task, say; `axum::serve`, hyper-util's servers and tonic's enter none).
/// Two rules keep such a span out:
///
/// - when the request carries a well-formed `traceparent` (sampled or not), the span must
///   be in the caller's trace and must not be the caller's span: a span of another trace
///   cannot be this request's, which continues the caller's. A service that does not
///   continue its callers' traces (its tracing layer ignores `traceparent`) therefore gets
///   no exemplar for the requests that carry one;
/// - without a `traceparent`, the current span is taken as the request's: keep the order
///   above if you enter spans of your own around the server.
///
/// ```
/// use axum::{Router, routing::get};
/// use opentelemetry::trace::TracerProvider as _;
/// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
/// use prometheus_client::registry::Registry;
/// use tower_http::trace::TraceLayer;
/// use tower_prometheus::{CurrentSpan, HttpMetricsLayer};
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// // The service's tracing: tracing-opentelemetry over the SDK (here with an in-memory
/// // exporter; OTLP in production).
/// let exporter = InMemorySpanExporter::default();
/// let provider = SdkTracerProvider::builder()
///     .with_simple_exporter(exporter.clone())
///     .build();
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("invoices")));
/// let _default = tracing::subscriber::set_default(subscriber);
///
/// let metrics = HttpMetricsLayer::builder()
///     .exemplars(true)
///     .trace_context(CurrentSpan)
///     .build(&mut Registry::default())?;
/// let app: Router = Router::new()
///     .route("/invoices", get(|| async { "[]" }))
///     .layer(metrics)
///     // Outside the metrics layer: its span is current when the metrics layer is called.
///     .layer(TraceLayer::new_for_http().make_span_with(|request: &http::Request<_>| {
///         tracing::info_span!("request", otel.kind = "server", uri = %request.uri())
///     }));
/// # Ok::<(), tower_prometheus::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CurrentSpan;

impl TraceContextSource for CurrentSpan {
    fn trace_context(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<TraceContext> {
        let context = match extensions.get::<Context>() {
            Some(context) => sampled(context),
            None => current_span(),
        }?;
        // A caller's trace: the request's span continues it, so a span of another trace
        // is not the request's (the layer order is wrong, or the tracing layer does not
        // continue traces), and the caller's own span is not this service's.
        if let Some(caller) = headers
            .get(TRACEPARENT)
            .and_then(|value| TraceContext::from_any_traceparent(value.as_bytes()))
        {
            if caller.trace_id() != context.trace_id() || caller.span_id() == context.span_id() {
                return None;
            }
        }
        Some(context)
    }
}

/// The span of `context`, when it is valid and sampled.
fn sampled(context: &Context) -> Option<TraceContext> {
    let span = context.span();
    let span = span.span_context();
    if !span.is_sampled() {
        return None;
    }
    TraceContext::new(
        u128::from_be_bytes(span.trace_id().to_bytes()),
        u64::from_be_bytes(span.span_id().to_bytes()),
    )
}

/// The sampled OpenTelemetry span of the current `tracing` span: `None` when there is no
/// current span, or it is not one of `tracing-opentelemetry`'s (no such layer, or the
/// span is filtered out of it), or it is not sampled. Reads the span by its id, without
/// a handle to it (`Span::current` would count a reference in and out).
fn current_span() -> Option<TraceContext> {
    tracing::dispatcher::get_default(|dispatch| {
        let current = dispatch.current_span();
        let id = current.id()?;
        let context = tracing_opentelemetry::get_otel_context(id, dispatch)?;
        sampled(&context)
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn context_of(trace: u128, span: u64, flags: TraceFlags) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            false,
            TraceState::default(),
        ))
    }

    fn read(
        headers: &[(&'static str, &'static str)],
        context: Option<Context>,
    ) -> Option<TraceContext> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        let mut extensions = Extensions::new();
        if let Some(context) = context {
            extensions.insert(context);
        }
        CurrentSpan.trace_context(&map, &extensions)
    }

    #[test]
    fn a_context_in_the_extensions_is_read_when_sampled() {
        let sampled = context_of(7, 9, TraceFlags::SAMPLED);
        assert_eq!(read(&[], Some(sampled)), TraceContext::new(7, 9));
        let unsampled = context_of(7, 9, TraceFlags::default());
        assert_eq!(read(&[], Some(unsampled)), None);
        // Invalid ids: none.
        assert_eq!(read(&[], Some(context_of(0, 9, TraceFlags::SAMPLED))), None);
        // No span anywhere (no subscriber in this test): none.
        assert_eq!(read(&[], None), None);
    }

    #[test]
    fn a_span_must_continue_the_callers_trace_and_not_be_the_callers_span() {
        let trace = 0x4bf92f3577b34da6a3ce929d0e0e4736;
        let ours = context_of(trace, 0x1234, TraceFlags::SAMPLED);
        assert_eq!(
            read(&[("traceparent", CALLER)], Some(ours)),
            TraceContext::new(trace, 0x1234)
        );
        // Another trace than the caller's: not the request's span.
        let other = context_of(trace + 1, 0x1234, TraceFlags::SAMPLED);
        assert_eq!(read(&[("traceparent", CALLER)], Some(other.clone())), None);
        // The caller's trace unsampled: still the caller's trace to match.
        let unsampled_caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(
            read(&[("traceparent", unsampled_caller)], Some(other)),
            None
        );
        // The caller's own span.
        let callers = context_of(trace, 0x00f067aa0ba902b7, TraceFlags::SAMPLED);
        assert_eq!(read(&[("traceparent", CALLER)], Some(callers)), None);
        // A malformed header says nothing of the caller.
        let ours = context_of(trace + 1, 0x1234, TraceFlags::SAMPLED);
        assert_eq!(
            read(&[("traceparent", "garbage")], Some(ours)),
            TraceContext::new(trace + 1, 0x1234)
        );
    }
}
