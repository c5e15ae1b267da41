//! The hot path allocates nothing once a label set exists, with or without a request
//! body: counted with an allocator that counts the allocations of the calling thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::Full;
use prometheus_client::registry::Registry;
use tower::{Layer, Service, service_fn};
use tower_prometheus::http_metrics::{ReadBytes, RequestBody};
use tower_prometheus::{HttpMetricsBuilder, HttpMetricsLayer};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as it is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Polls a future that needs no wake-up to completion, without an executor.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// One request through `service`, its response body streamed to the end.
fn request<S, B>(service: &mut S, body: &'static [u8]) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
{
    let request = Request::post("/jobs/1")
        .body(Full::new(Bytes::from_static(body)))
        .expect("valid request");
    let response = run(service.call(request)).expect("infallible");
    let mut body = pin!(response.into_body());
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = 0;
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        assert!(frame.is_ok());
        frames += 1;
    }
    assert!(body.is_end_stream());
    frames
}

/// The allocations of 1,000 requests with this body, after one to warm up.
fn allocations_of_1000<S, B>(service: &mut S, body: &'static [u8]) -> u64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
{
    request(service, body);
    let before = allocations();
    for _ in 0..1_000 {
        assert_eq!(request(service, body), 1);
    }
    allocations() - before
}

fn handler<B: http_body::Body>(
    request: Request<B>,
) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    let body = if request.body().is_end_stream() {
        Bytes::from_static(b"empty")
    } else {
        Bytes::from_static(b"a body")
    };
    std::future::ready(Ok(Response::new(Full::new(body))))
}

#[test]
fn no_allocation_per_request_once_the_label_set_exists() {
    // Building a request allocates (its URI): what the bare service costs is the baseline.
    let mut bare = service_fn(handler::<Full<Bytes>>);
    let baseline = allocations_of_1000(&mut bare, b"");
    assert_eq!(allocations_of_1000(&mut bare, b"payload"), baseline);

    // Both ways of measuring request sizes, each on its own registry.
    let mut declared = Registry::default();
    let mut service = HttpMetricsLayer::new(&mut declared)
        .route_fn(|_: &Request<Full<Bytes>>| Some("/jobs/{id}"))
        .layer(service_fn(handler::<Full<Bytes>>));
    assert_eq!(
        allocations_of_1000(&mut service, b""),
        baseline,
        "no allocation in 1,000 requests without a body (ContentLength)"
    );
    assert_eq!(
        allocations_of_1000(&mut service, b"payload"),
        baseline,
        "no allocation in 1,000 requests with a body (ContentLength)"
    );

    let mut read = Registry::default();
    let mut service = HttpMetricsLayer::new(&mut read)
        .route_fn(|_: &Request<Full<Bytes>>| Some("/jobs/{id}"))
        .request_size(ReadBytes)
        .layer(service_fn(handler::<RequestBody<Full<Bytes>>>));
    assert_eq!(
        allocations_of_1000(&mut service, b""),
        baseline,
        "no allocation in 1,000 requests without a body (ReadBytes)"
    );
    // A request with a body shares a byte counter between its body and the response,
    // reused from a per-thread pool.
    assert_eq!(
        allocations_of_1000(&mut service, b"payload"),
        baseline,
        "no allocation in 1,000 requests with a body (ReadBytes)"
    );

    // The handler reads no body: declared, a request with a body has 7 bytes; read, 0.
    for (registry, sum) in [(&declared, "7007.0"), (&read, "0.0")] {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
        assert!(text.contains("http_server_request_duration_seconds_count{http_request_method=\"POST\",http_route=\"/jobs/{id}\",http_response_status_code=\"200\",url_scheme=\"http\",network_protocol_version=\"1.1\"} 2002"), "{text}");
        let labels = "{http_request_method=\"POST\",http_route=\"/jobs/{id}\",http_response_status_code=\"200\",url_scheme=\"http\",network_protocol_version=\"1.1\"}";
        let line = format!("http_server_request_body_size_bytes_sum{labels} {sum}\n");
        assert!(text.contains(&line), "{line} in {text}");
    }
}

#[test]
fn excluded_requests_allocate_nothing() {
    let mut bare = service_fn(handler::<Full<Bytes>>);
    let baseline = allocations_of_1000(&mut bare, b"payload");
    // Excluded by exact path, by prefix and by route template: each decided before
    // anything is recorded, and none allocates, whatever the request size mode.
    type Exclude = fn(HttpMetricsBuilder) -> HttpMetricsBuilder;
    let exclusions: [(&str, Exclude); 3] = [
        ("path", |builder| builder.exclude_path("/jobs/1")),
        ("prefix", |builder| builder.exclude_prefix("/jobs/")),
        ("route", |builder| builder.exclude_route("/jobs/{id}")),
    ];
    for (by, exclude) in exclusions {
        let mut registry = Registry::default();
        let layer = exclude(HttpMetricsLayer::builder().exemplars(true))
            .build(&mut registry)
            .expect("valid options")
            .route_fn(|_: &Request<Full<Bytes>>| Some("/jobs/{id}"));
        let mut declared = layer.clone().layer(service_fn(handler::<Full<Bytes>>));
        assert_eq!(
            allocations_of_1000(&mut declared, b"payload"),
            baseline,
            "no allocation in 1,000 requests excluded by {by} (ContentLength)"
        );
        let mut read = layer
            .request_size(ReadBytes)
            .layer(service_fn(handler::<RequestBody<Full<Bytes>>>));
        assert_eq!(
            allocations_of_1000(&mut read, b"payload"),
            baseline,
            "no allocation in 1,000 requests excluded by {by} (ReadBytes)"
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            !text.contains("http_server_request_duration_seconds_count{"),
            "excluded by {by}, nothing recorded: {text}"
        );
    }
}

/// 1,000 requests with a sampled `traceparent` through `service`, after one to warm up.
fn traced_allocations_of_1000<S, B>(service: &mut S) -> u64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
{
    let one = |service: &mut S| {
        let request = Request::get("/jobs/1")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let response = run(service.call(request)).expect("infallible");
        let mut body = pin!(response.into_body());
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
            assert!(frame.is_ok());
        }
    };
    one(service);
    let before = allocations();
    for _ in 0..1_000 {
        one(service);
    }
    allocations() - before
}

#[test]
fn native_histograms_and_exemplars_allocate_nothing_per_request() {
    let mut bare = service_fn(handler::<Full<Bytes>>);
    let baseline = traced_allocations_of_1000(&mut bare);
    let mut registry = Registry::default();
    let builder = HttpMetricsLayer::builder().exemplars(true);
    // Native histograms exist only with `protobuf`.
    #[cfg(feature = "protobuf")]
    let builder = builder.native_histograms(true);
    let mut service = builder
        .build(&mut registry)
        .expect("valid options")
        .route_fn(|_: &Request<Full<Bytes>>| Some("/jobs/{id}"))
        .layer(service_fn(handler::<Full<Bytes>>));
    assert_eq!(traced_allocations_of_1000(&mut service), baseline);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(text.contains("http_route=\"/jobs/{id}\""), "{text}");
    assert!(text.contains("} 1001\n"), "every request counted: {text}");
}
