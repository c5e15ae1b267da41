//! Scrape storms: concurrent scrapes share encodes, scrapes beyond the bound get `503`,
//! and an encode holds no worker thread of the runtime.
//!
//! A [`Gate`] collector counts its encodes and can hold them until the test opens it,
//! so that every assertion is about counts and orderings, never about time.

#![cfg(feature = "runtime")]

use std::convert::Infallible;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tower::{Service, ServiceExt};
use tower_prometheus::{Exporter, ExporterFuture};

/// How long a closed gate holds an encode at most: only a failsafe that turns a
/// deadlock (the encode holding the thread the test needs) into a failed assertion
/// instead of a hung test. No assertion depends on it.
const FAILSAFE: Duration = Duration::from_secs(20);

/// A collector that counts its encodes, tells the test when one starts, and holds it
/// while the gate is closed. It writes `gate_encode N`, N being its encode's number.
#[derive(Debug)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    started: AtomicU64,
    finished: AtomicU64,
    /// Set if an encode was let through by the failsafe rather than by the test.
    timed_out: AtomicBool,
    entered: mpsc::UnboundedSender<u64>,
}

impl Gate {
    fn new(open: bool) -> (Arc<Self>, mpsc::UnboundedReceiver<u64>) {
        let (entered, receiver) = mpsc::unbounded_channel();
        let gate = Self {
            open: Mutex::new(open),
            opened: Condvar::new(),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            entered,
        };
        (Arc::new(gate), receiver)
    }

    fn set(&self, open: bool) {
        *self.open.lock().expect("gate lock") = open;
        self.opened.notify_all();
    }

    fn encodes(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
}

impl Collector for Gate {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.entered.send(number);
        let open = self.open.lock().expect("gate lock");
        let (open, wait) = self
            .opened
            .wait_timeout_while(open, FAILSAFE, |open| !*open)
            .expect("gate lock");
        if wait.timed_out() {
            self.timed_out.store(true, Ordering::SeqCst);
        }
        drop(open);
        let gauge = ConstGauge::new(number as i64);
        let metric = encoder.encode_descriptor(
            "gate_encode",
            "The number of this encode",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)?;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A registry holding `gate` and a counter `jobs`.
fn registry(gate: &Arc<Gate>) -> (Arc<Registry>, Counter) {
    let mut registry = Registry::default();
    let jobs = Counter::default();
    registry.register("jobs", "Jobs done", jobs.clone());
    registry.register_collector(Box::new(gate.clone()));
    (Arc::new(registry), jobs)
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";
const TEXT: &str = "text/plain; version=0.0.4";

fn request(accept: &str, gzip: bool) -> Request<()> {
    let mut request = Request::get("/metrics").header(header::ACCEPT, accept);
    if gzip {
        request = request.header(header::ACCEPT_ENCODING, "gzip");
    }
    request.body(()).expect("a valid request")
}

/// Calls the exporter now: the scrape arrives at this point, even though its future
/// runs later.
fn arrive(exporter: &mut Exporter, request: Request<()>) -> ExporterFuture {
    exporter.call(request)
}

/// A scrape's status, `Content-Type` and body, gunzipped.
struct Answer {
    status: StatusCode,
    content_type: String,
    gzipped: bool,
    body: String,
}

async fn read(response: Response<Full<Bytes>>) -> Answer {
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|value: &http::HeaderValue| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header(header::CONTENT_TYPE);
    let gzipped = header(header::CONTENT_ENCODING) == "gzip";
    let length: usize = header(header::CONTENT_LENGTH).parse().unwrap_or(usize::MAX);
    let Ok(bytes) = response.into_body().collect().await.map(|b| b.to_bytes());
    if status == StatusCode::OK {
        assert_eq!(bytes.len(), length, "Content-Length is the body's length");
    }
    let body = if gzipped {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("a valid gzip stream");
        text
    } else {
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    };
    Answer {
        status,
        content_type,
        gzipped,
        body,
    }
}

async fn run(future: ExporterFuture) -> Answer {
    let Ok(response) = future.await;
    read(response).await
}

/// The value of the sample line `name` in a text body.
fn sample(body: &str, name: &str) -> Option<u64> {
    body.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.parse().ok())?
    })
}

/// A complete body of one encode: every family, in the format asked for.
fn assert_complete(answer: &Answer, openmetrics: bool) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        sample(&answer.body, "gate_encode").is_some(),
        "{}",
        answer.body
    );
    assert!(
        sample(&answer.body, "jobs_total").is_some(),
        "{}",
        answer.body
    );
    if openmetrics {
        assert!(
            answer
                .content_type
                .starts_with("application/openmetrics-text")
        );
        assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);
    } else {
        assert!(answer.content_type.starts_with("text/plain; version=0.0.4"));
        assert!(!answer.body.contains("# EOF"), "{}", answer.body);
    }
}

/// 64 scrapes at once share two encodes: the one running when they came, which serves
/// the scrape that started it (or the next one, if that scrape is polled again only
/// after the next one ended), and one started after they all arrived, which serves the
/// 63 others. Each answer is complete and holds what was recorded before its request:
/// the increment made after the first encode started is in the 63 answers, and in the
/// first only if it got the second encode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scrapes_share_encodes() {
    let (gate, mut entered) = Gate::new(false);
    let (registry, jobs) = registry(&gate);
    let mut exporter = Exporter::new(registry).max_requests_in_flight(0);

    let first = tokio::spawn(run(arrive(&mut exporter, request(OPENMETRICS, false))));
    assert_eq!(entered.recv().await, Some(1), "the first encode started");
    jobs.inc();
    let others: Vec<_> = (0..63)
        .map(|_| arrive(&mut exporter, request(OPENMETRICS, false)))
        .map(|future| tokio::spawn(run(future)))
        .collect();
    gate.set(true);

    let first = first.await.expect("the first scrape");
    assert_complete(&first, true);
    // The encode it started, or, if it was polled again only after the next one ended
    // (a loaded machine), that newer one, which began after it arrived too: either way
    // the body is of one encode, and holds the increment only if that encode began
    // after it.
    let encode = sample(&first.body, "gate_encode");
    assert!(matches!(encode, Some(1 | 2)), "{encode:?}");
    assert_eq!(sample(&first.body, "jobs_total"), encode.map(|n| n - 1));
    for other in others {
        let other = other.await.expect("a scrape");
        assert_complete(&other, true);
        assert_eq!(sample(&other.body, "gate_encode"), Some(2));
        assert_eq!(
            sample(&other.body, "jobs_total"),
            Some(1),
            "recorded before it came"
        );
    }
    assert_eq!(gate.encodes(), 2, "64 scrapes, 2 encodes");
    assert!(!gate.timed_out.load(Ordering::SeqCst));

    // Alone, a scrape gets an encode of its own.
    let alone = run(arrive(&mut exporter, request(OPENMETRICS, false))).await;
    assert_eq!(sample(&alone.body, "gate_encode"), Some(3));
}

/// Each format and compression has encodes of its own: 64 scrapes of four kinds, one
/// encode of each kind running when they come, give eight encodes, and each answer is
/// in the format and encoding it asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_format_and_compression_shares_its_own_encodes() {
    let (gate, mut entered) = Gate::new(false);
    let (registry, _) = registry(&gate);
    let mut exporter = Exporter::new(registry).max_requests_in_flight(0);
    let kinds = [
        (OPENMETRICS, false),
        (OPENMETRICS, true),
        (TEXT, false),
        (TEXT, true),
    ];

    let mut scrapes = Vec::new();
    for (accept, gzip) in kinds {
        let future = arrive(&mut exporter, request(accept, gzip));
        scrapes.push((accept, gzip, tokio::spawn(run(future))));
    }
    for _ in kinds {
        assert!(
            entered.recv().await.is_some(),
            "an encode of each kind started"
        );
    }
    for i in 0..60 {
        let (accept, gzip) = kinds[i % 4];
        let future = arrive(&mut exporter, request(accept, gzip));
        scrapes.push((accept, gzip, tokio::spawn(run(future))));
    }
    gate.set(true);

    for (accept, gzip, scrape) in scrapes {
        let answer = scrape.await.expect("a scrape");
        assert_complete(&answer, accept == OPENMETRICS);
        assert_eq!(answer.gzipped, gzip && cfg!(feature = "gzip"));
    }
    assert_eq!(
        gate.encodes(),
        8,
        "64 scrapes of 4 kinds, 2 encodes per kind"
    );
}

/// At most `max_requests_in_flight` scrapes are served at once: with 3 in flight (one
/// encode held), the next ones get `503` at once; once they are answered, or dropped,
/// their places are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_beyond_the_bound_get_503_then_all_recover() {
    let (gate, mut entered) = Gate::new(false);
    let (registry, _) = registry(&gate);
    let mut exporter = Exporter::new(registry).max_requests_in_flight(3);

    let a = tokio::spawn(run(arrive(&mut exporter, request(TEXT, false))));
    assert_eq!(entered.recv().await, Some(1));
    let b = tokio::spawn(run(arrive(&mut exporter, request(TEXT, false))));
    let c = tokio::spawn(run(arrive(&mut exporter, request(OPENMETRICS, true))));
    for _ in 0..2 {
        let refused = run(arrive(&mut exporter, request(TEXT, false))).await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.body.contains("(3)"), "{}", refused.body);
    }
    // A clone counts against the same bound.
    let refused = run(arrive(&mut exporter.clone(), request(TEXT, false))).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    // A 405 takes no place and is not refused.
    let post = Request::post("/metrics").body(()).expect("a valid request");
    assert_eq!(
        run(arrive(&mut exporter, post)).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    gate.set(true);
    for scrape in [a, b, c] {
        assert_eq!(scrape.await.expect("a scrape").status, StatusCode::OK);
    }

    // Recovered: three at once are served.
    let again: Vec<_> = (0..3)
        .map(|_| tokio::spawn(run(arrive(&mut exporter, request(TEXT, false)))))
        .collect();
    for scrape in again {
        assert_eq!(scrape.await.expect("a scrape").status, StatusCode::OK);
    }

    // Scrapes dropped before their answer (clients gone) give their places back, the
    // one whose encode is running included.
    gate.set(false);
    while entered.try_recv().is_ok() {}
    let started = gate.encodes();
    let mut d = arrive(&mut exporter, request(TEXT, false));
    // Polled once: it starts an encode on the blocking pool and waits.
    assert!(futures_poll_once(&mut d).is_none());
    assert_eq!(entered.recv().await, Some(started + 1));
    let e = arrive(&mut exporter, request(TEXT, false));
    let f = arrive(&mut exporter, request(TEXT, false));
    let refused = run(arrive(&mut exporter, request(TEXT, false))).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    drop((d, e, f));
    let g = tokio::spawn(run(arrive(&mut exporter, request(TEXT, false))));
    let h = tokio::spawn(run(arrive(&mut exporter, request(TEXT, false))));
    let i = tokio::spawn(run(arrive(&mut exporter, request(TEXT, false))));
    let refused = run(arrive(&mut exporter, request(TEXT, false))).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    gate.set(true);
    for scrape in [g, h, i] {
        let answer = scrape.await.expect("a scrape");
        assert_complete(&answer, false);
        // The dropped scrape's encode ended without anyone to take it; these three
        // arrived after it started and share the next one.
        assert_eq!(sample(&answer.body, "gate_encode"), Some(started + 2));
    }
    assert_eq!(gate.encodes(), started + 2);
    assert!(!gate.timed_out.load(Ordering::SeqCst));
}

/// Polls a future once with a no-op waker: `Some` if it was ready.
fn futures_poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(future).poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// On a current-thread runtime, a scrape whose encode is held does not hold the one
/// thread: the test's own task learns the encode started, and another task runs to its
/// end, while the encode is still held; then the scrape is answered.
///
/// Were the encode run on the runtime's thread, the test's task could not run until the
/// failsafe let the encode through: `timed_out` would be set and the progress would
/// come after the encode's end.
#[tokio::test(flavor = "current_thread")]
async fn an_encode_holds_no_worker_thread() {
    let (gate, mut entered) = Gate::new(false);
    let (registry, _) = registry(&gate);
    let exporter = Exporter::new(registry);

    let scrape = tokio::spawn(exporter.oneshot(request(OPENMETRICS, true)));
    assert_eq!(entered.recv().await, Some(1), "the encode started");
    let progress = tokio::spawn(async {
        let mut steps = 0u32;
        for _ in 0..100 {
            steps += 1;
            tokio::task::yield_now().await;
        }
        steps
    });
    assert_eq!(progress.await.expect("the other task"), 100);
    assert_eq!(
        gate.finished.load(Ordering::SeqCst),
        0,
        "the other task ran to its end while the encode was held"
    );
    assert!(!gate.timed_out.load(Ordering::SeqCst));

    gate.set(true);
    let Ok(response) = scrape.await.expect("the scrape");
    let answer = read(response).await;
    assert_complete(&answer, true);
    assert_eq!(gate.encodes(), 1);
    assert!(!gate.timed_out.load(Ordering::SeqCst));
}

/// A collector that panics on its first encode: the panic stays on the blocking pool,
/// the scrapes waiting for that encode get a `500` rather than waiting forever, and the
/// next scrape is served.
#[derive(Debug, Default)]
struct PanicsOnce {
    encodes: AtomicU64,
}

impl Collector for PanicsOnce {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if self.encodes.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("a collector panicked (on purpose, in a test)");
        }
        let gauge = ConstGauge::new(1i64);
        let metric = encoder.encode_descriptor("fine", "Fine", None, gauge.metric_type())?;
        gauge.encode(metric)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_collector_panic_is_a_500_and_the_next_scrape_is_served() {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(PanicsOnce::default()));
    let exporter = Exporter::new(Arc::new(registry));

    let failed = exporter.clone().oneshot(request(TEXT, false)).await;
    let Ok::<_, Infallible>(failed) = failed;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let served = run(exporter.clone().call(request(TEXT, false))).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(sample(&served.body, "fine"), Some(1));
}
