//! The `metrics` facade recorded into the crate's registry (feature `metrics-facade`):
//! through a real axum app on several threads, beside a published crate that emits
//! through `metrics`, in every exposition format, checked by promtool and the reference
//! OpenMetrics parser; the cap, the collisions, local recorders, a second install.
//!
//! The global recorder is one per process: the test whose name starts with
//! `through_the_global_recorder` is the only one that installs it; the others use
//! `metrics::with_local_recorder`. The tests that need promtool and the Python parser
//! say so in their names.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use bytes::Bytes;
use common::{Sample, parse, promtool_check_metrics, python_openmetrics_check, value};
use http::{Request, header};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tower_prometheus::{Metrics, MetricsRecorder, OPENMETRICS_CONTENT_TYPE};

/// `Metrics` without the collectors, whose values move between two scrapes.
fn quiet(recorder: tower_prometheus::MetricsRecorderBuilder) -> Metrics {
    Metrics::builder()
        .process(false)
        .runtime(false)
        .metrics_recorder(recorder)
        .build()
        .expect("valid options")
}

/// The `# TYPE` lines of a text exposition: family name to type. Panics on a family
/// that appears twice.
fn families(text: &str) -> BTreeMap<String, String> {
    let mut families = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a type");
            let previous = families.insert(name.to_owned(), kind.to_owned());
            assert!(previous.is_none(), "family {name} twice in:\n{text}");
        }
    }
    families
}

/// Both text formats of `metrics`, each family once.
fn scrape(metrics: &Metrics) -> (String, String) {
    let text = common::prometheus_text(metrics.registry());
    let openmetrics = common::openmetrics_text(metrics.registry());
    families(&text);
    families(&openmetrics);
    (text, openmetrics)
}

/// Both text formats of `metrics`, checked by promtool and the OpenMetrics parser.
fn checked_scrape(metrics: &Metrics) -> (String, String) {
    let (text, openmetrics) = scrape(metrics);
    promtool_check_metrics(&text);
    python_openmetrics_check(&openmetrics);
    (text, openmetrics)
}

// ---------------------------------------------------------------------------------------
// The global recorder: an axum app, concurrent scrapes, tokio-metrics, a second install.
// ---------------------------------------------------------------------------------------

/// Orders taken by the app: the values of each of `KINDS`, `REQUESTS` times in all.
const KINDS: [&str; 4] = ["book", "pen", "ink", "paper"];
const REQUESTS: usize = 200;

fn shop(metrics: &Metrics, threads: Arc<Mutex<HashSet<std::thread::ThreadId>>>) -> Router {
    describe_counter!("shop.orders", "Orders placed, by kind");
    describe_gauge!("shop.baskets.open", "Baskets open right now");
    describe_histogram!("shop.checkout.duration", Unit::Seconds, "Time to check out");
    Router::new()
        .route(
            "/order/{kind}",
            post(move |Path(kind): Path<String>| {
                let threads = threads.clone();
                async move {
                    threads
                        .lock()
                        .expect("not poisoned")
                        .insert(std::thread::current().id());
                    // Labels chosen at run time and static ones.
                    counter!("shop.orders", "kind" => kind.clone()).increment(1);
                    counter!("shop.requests", "handler" => "order").increment(1);
                    let open = gauge!("shop.baskets.open", "shop" => "main");
                    open.increment(2.0);
                    tokio::task::yield_now().await;
                    open.decrement(1.0);
                    gauge!("shop.last_order_size").set(3.0);
                    let seconds = if kind == "book" { 0.2 } else { 0.02 };
                    histogram!("shop.checkout.duration", "kind" => kind).record(seconds);
                    histogram!("shop.order.value", "currency" => "eur").record(30.0);
                    "ordered"
                }
            }),
        )
        .route_service("/metrics", metrics.exporter())
        .layer(metrics.http_layer())
}

/// `n` requests on one HTTP/1.1 connection.
async fn client(addr: SocketAddr, first: usize, n: usize) {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    for i in first..first + n {
        let request = Request::post(format!("/order/{}", KINDS[i % KINDS.len()]))
            .header(header::HOST, "127.0.0.1")
            .body(Body::empty())
            .expect("valid request");
        let response = sender.send_request(request).await.expect("a response");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.expect("a body");
    }
}

/// `/metrics` in the format `accept` asks for.
async fn scrape_over_http(addr: SocketAddr, accept: &str) -> (String, Bytes) {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = Request::get("/metrics")
        .header(header::HOST, "127.0.0.1")
        .header(header::ACCEPT, accept)
        .body(Body::empty())
        .expect("valid request");
    let response = sender.send_request(request).await.expect("a response");
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (content_type, body)
}

#[test]
fn through_the_global_recorder_checked_by_promtool_and_the_openmetrics_parser() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let metrics = Metrics::builder()
            .metrics_recorder(
                MetricsRecorder::builder().buckets_for_prefix("shop.order", [10.0, 50.0, 100.0]),
            )
            .build()
            .expect("valid options");
        metrics
            .install_recorder()
            .expect("the first global recorder");
        let second = Metrics::new();
        let error = second
            .install_recorder()
            .expect_err("a process has one global recorder");
        assert!(error.to_string().contains("already"), "{error}");
        assert!(metrics.install_recorder().is_err(), "not twice either");

        an_axum_app_on_several_threads(&metrics).await;
        scrapes_during_writes_never_go_backwards(&metrics);
        a_published_crate_emitting_through_metrics(&metrics).await;
    });
}

async fn an_axum_app_on_several_threads(metrics: &Metrics) {
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let app = shop(metrics, threads.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let connections = 8;
    let per_connection = REQUESTS / connections;
    let clients: Vec<_> = (0..connections)
        .map(|c| tokio::spawn(client(addr, c * per_connection, per_connection)))
        .collect();
    for client in clients {
        client.await.expect("the client finishes");
    }
    let threads = threads.lock().expect("not poisoned").len();
    assert!(threads >= 2, "handlers ran on {threads} thread(s)");

    // Prometheus text, as promtool reads it.
    let (content_type, text) = scrape_over_http(addr, "text/plain").await;
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = String::from_utf8(text.to_vec()).expect("UTF-8");
    promtool_check_metrics(&text);
    let samples = parse(&text);
    let per_kind = (REQUESTS / KINDS.len()) as f64;
    for kind in KINDS {
        assert_eq!(
            value(&samples, "shop_orders_total", &[("kind", kind)]),
            Some(per_kind),
            "{text}"
        );
    }
    let all = REQUESTS as f64;
    assert_eq!(
        value(&samples, "shop_requests_total", &[("handler", "order")]),
        Some(all)
    );
    assert_eq!(
        value(&samples, "shop_baskets_open", &[("shop", "main")]),
        Some(all)
    );
    assert_eq!(value(&samples, "shop_last_order_size", &[]), Some(3.0));
    let checkout = "shop_checkout_duration_seconds";
    assert_eq!(
        value(&samples, &format!("{checkout}_count"), &[("kind", "book")]),
        Some(per_kind)
    );
    assert_eq!(
        value(
            &samples,
            &format!("{checkout}_bucket"),
            &[("kind", "book"), ("le", "0.1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            &format!("{checkout}_bucket"),
            &[("kind", "book"), ("le", "0.25")]
        ),
        Some(per_kind)
    );
    assert_eq!(
        value(
            &samples,
            &format!("{checkout}_bucket"),
            &[("kind", "pen"), ("le", "0.025")]
        ),
        Some(per_kind)
    );
    // Buckets set for the prefix.
    for (le, count) in [("10", 0.0), ("50", all), ("100", all), ("+Inf", all)] {
        assert_eq!(
            value(
                &samples,
                "shop_order_value_bucket",
                &[("currency", "eur"), ("le", le)]
            ),
            Some(count),
            "le={le}"
        );
    }
    assert_eq!(
        value(&samples, "shop_order_value_sum", &[("currency", "eur")]),
        Some(30.0 * all)
    );
    assert!(
        text.contains("# HELP shop_orders_total Orders placed, by kind\n"),
        "{text}"
    );
    // Beside the crate's own metrics of the same requests.
    assert_eq!(
        common::total(
            &samples,
            "http_server_request_duration_seconds_count",
            &[("http_route", "/order/{kind}")]
        ),
        all
    );

    // OpenMetrics, as Prometheus asks for it.
    let (content_type, openmetrics) = scrape_over_http(addr, "application/openmetrics-text").await;
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    let openmetrics = String::from_utf8(openmetrics.to_vec()).expect("UTF-8");
    python_openmetrics_check(&openmetrics);
    families(&openmetrics);
    assert!(
        openmetrics.contains(&format!("# UNIT {checkout} seconds\n")),
        "{openmetrics}"
    );
    assert!(
        openmetrics.contains("# TYPE shop_orders counter\n"),
        "{openmetrics}"
    );
    let samples = parse(&openmetrics);
    assert_eq!(
        value(&samples, "shop_orders_total", &[("kind", "ink")]),
        Some(per_kind)
    );
    println!("OpenMetrics excerpt:\n{}", excerpt(&openmetrics, "shop_"));
    println!("text excerpt:\n{}", excerpt(&text, "shop_"));

    #[cfg(feature = "protobuf")]
    {
        use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily;
        use prost::Message as _;
        let (content_type, body) = scrape_over_http(
            addr,
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
        )
        .await;
        assert_eq!(content_type, tower_prometheus::PROTOBUF_CONTENT_TYPE);
        let mut body = &body[..];
        let mut decoded = BTreeMap::new();
        while !body.is_empty() {
            let family = MetricFamily::decode_length_delimited(&mut body).expect("delimited");
            decoded.insert(family.name.clone(), family);
        }
        let orders = &decoded["shop_orders_total"];
        assert_eq!(orders.metric.len(), KINDS.len());
        let counted: f64 = orders
            .metric
            .iter()
            .map(|m| m.counter.as_ref().map_or(0.0, |c| c.value))
            .sum();
        assert_eq!(counted, all);
        let checkout = &decoded[checkout];
        let histogram = checkout.metric[0].histogram.as_ref().expect("a histogram");
        assert_eq!(histogram.sample_count, per_kind as u64);
        assert_eq!(
            decoded["shop_baskets_open"].metric[0]
                .gauge
                .as_ref()
                .map(|g| g.value),
            Some(all)
        );
    }
}

/// The lines of `text` about families starting with `prefix`, for the report.
fn excerpt(text: &str, prefix: &str) -> String {
    text.lines()
        .filter(|line| {
            line.starts_with(prefix)
                || line
                    .split(' ')
                    .nth(2)
                    .is_some_and(|name| name.starts_with(prefix))
        })
        .filter(|line| !line.contains("_bucket") || line.contains("le=\"0.25\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writers on four threads (macro calls and kept handles) while a scraper reads: each
/// scrape's counters and histogram counts are at least those of the scrape before, and
/// the last has every write.
fn scrapes_during_writes_never_go_backwards(metrics: &Metrics) {
    const WRITERS: u64 = 4;
    const WRITES: u64 = 20_000;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                scope.spawn(move || {
                    let kept = counter!("race.kept");
                    for i in 0..WRITES {
                        counter!("race.macro", "writer" => "any").increment(1);
                        kept.increment(1);
                        histogram!("race.seconds").record((i % 7) as f64 / 100.0);
                        gauge!("race.writer", "writer" => w.to_string()).set(i as f64);
                    }
                })
            })
            .collect();
        let scraper = scope.spawn(|| {
            let mut last = (0.0, 0.0, 0.0);
            let mut scrapes = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || scrapes < 3 {
                let samples = parse(&common::prometheus_text(metrics.registry()));
                let now = (
                    value(&samples, "race_macro_total", &[("writer", "any")]).unwrap_or(0.0),
                    value(&samples, "race_kept_total", &[]).unwrap_or(0.0),
                    value(&samples, "race_seconds_count", &[]).unwrap_or(0.0),
                );
                assert!(
                    now.0 >= last.0 && now.1 >= last.1 && now.2 >= last.2,
                    "{last:?} then {now:?}"
                );
                if let Some(inf) = value(&samples, "race_seconds_bucket", &[("le", "+Inf")]) {
                    assert_eq!(
                        inf, now.2,
                        "the count is the +Inf bucket of the same scrape"
                    );
                }
                last = now;
                scrapes += 1;
            }
            scrapes
        });
        for writer in writers {
            writer.join().expect("the writer finishes");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(scraper.join().expect("the scraper finishes") >= 3);
    });
    let samples = parse(&common::prometheus_text(metrics.registry()));
    let all = (WRITERS * WRITES) as f64;
    assert_eq!(
        value(&samples, "race_macro_total", &[("writer", "any")]),
        Some(all)
    );
    assert_eq!(value(&samples, "race_kept_total", &[]), Some(all));
    assert_eq!(value(&samples, "race_seconds_count", &[]), Some(all));
    assert_eq!(
        value(&samples, "race_writer", &[("writer", "3")]),
        Some((WRITES - 1) as f64)
    );
}

/// tokio-metrics' `metrics-rs` integration, as its docs use it: a reporter task that
/// describes its metrics and publishes them through the global recorder. One of its
/// names is also one of the crate's runtime metrics: refused, and published once.
async fn a_published_crate_emitting_through_metrics(metrics: &Metrics) {
    tokio::spawn(
        tokio_metrics::RuntimeMetricsReporterBuilder::default()
            .with_interval(Duration::from_millis(10))
            .describe_and_run(),
    );
    let mut text = String::new();
    for _ in 0..500 {
        text = common::prometheus_text(metrics.registry());
        if text.contains("\ntokio_workers_count 4.0\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(text.contains("\ntokio_workers_count 4.0\n"), "{text}");
    assert!(
        text.contains("# TYPE tokio_workers_count gauge\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP tokio_workers_count The number of worker threads"),
        "{text}"
    );
    // tokio-metrics names some gauges `*_count`, which promtool's linter would have
    // for histograms only: the names are that crate's, kept as its users know them.
    promtool_lint_only(
        &text,
        "non-histogram and non-summary metrics should not have \"_count\" suffix",
    );
    assert!(
        text.contains("\ntokio_total_busy_duration_seconds_total "),
        "{text}"
    );
    python_openmetrics_check(&common::openmetrics_text(metrics.registry()));
    let refused = metrics.recorder().refused();
    assert!(
        refused
            .iter()
            .any(|r| r.contains("\"tokio_global_queue_depth\"")
                && r.contains("is a metric of tower-prometheus")),
        "{refused:?}"
    );
    assert_eq!(
        text.matches("# TYPE tokio_global_queue_depth ").count(),
        1,
        "{text}"
    );
}

/// promtool on `text`: parsed, and complaining of nothing but `lint` (which it must).
fn promtool_lint_only(text: &str, lint: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "promtool could not be started ({error}); install it with: \
                 sudo apt-get install -y prometheus"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads its input");
    let output = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let complaints: Vec<&str> = said
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(
        !complaints.is_empty(),
        "promtool found nothing to lint: {lint}"
    );
    for complaint in complaints {
        assert!(
            complaint.contains(lint),
            "promtool: {complaint}\non:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Local recorders.
// ---------------------------------------------------------------------------------------

fn over_the_cap() -> Metrics {
    let metrics = quiet(MetricsRecorder::builder().max_series(3));
    metrics::with_local_recorder(&metrics.recorder(), || {
        for user in 1..=5u32 {
            for _ in 0..user {
                counter!("logins", "user" => user.to_string()).increment(1);
                histogram!("login.seconds", "user" => user.to_string()).record(0.01);
            }
            gauge!("sessions", "user" => user.to_string()).set(f64::from(user));
        }
        // A series that exists keeps counting after the cap is reached.
        counter!("logins", "user" => "1").increment(10);
    });
    metrics
}

#[test]
fn the_cap_sends_new_label_sets_to_the_overflow_series() {
    let (text, _) = scrape(&over_the_cap());
    let samples = parse(&text);
    assert_eq!(
        value(&samples, "logins_total", &[("user", "1")]),
        Some(11.0)
    );
    assert_eq!(value(&samples, "logins_total", &[("user", "3")]), Some(3.0));
    assert_eq!(value(&samples, "logins_total", &[("user", "4")]), None);
    assert_eq!(
        value(
            &samples,
            "logins_total",
            &[("otel_metric_overflow", "true")]
        ),
        Some(9.0)
    );
    assert_eq!(
        value(
            &samples,
            "login_seconds_count",
            &[("otel_metric_overflow", "true")]
        ),
        Some(9.0)
    );
    // The last gauge value set beyond the cap.
    assert_eq!(
        value(&samples, "sessions", &[("otel_metric_overflow", "true")]),
        Some(5.0)
    );
    assert_eq!(
        common::find(&samples, "logins_total", &[]).len(),
        4,
        "{text}"
    );
}

fn clashing() -> Metrics {
    let mut registry = Registry::default();
    let jobs: Counter = Counter::default();
    registry.register("jobs", "Jobs run", jobs.clone());
    let metrics = Metrics::builder()
        .registry(registry)
        .process(false)
        .runtime(false)
        .build()
        .expect("valid options");
    let pool: Gauge = Gauge::default();
    metrics
        .register("pool_size", "Connections", pool.clone())
        .expect("a free name");
    jobs.inc();
    pool.set(4);

    metrics::with_local_recorder(&metrics.recorder(), || {
        counter!("jobs").increment(100); // in the registry given to the builder
        gauge!("jobs_total").set(1.0); // a sample of that counter
        gauge!("http.server.active_requests").set(1.0); // one of the crate's families
        gauge!("pool.size").set(9.0); // registered with `Metrics::register`
        counter!("cache.hits").increment(1);
        gauge!("cache.hits").set(2.0); // a facade counter of that name exists
        histogram!("latency").record(0.1);
        gauge!("latency_count").set(3.0); // a sample of that histogram
        // Refused twice, logged once.
        counter!("jobs").increment(1);
    });
    metrics
}

#[test]
fn names_clashing_with_other_families_are_refused_and_published_once() {
    let metrics = clashing();
    // A name the facade holds cannot be registered afterwards.
    let error = metrics
        .register("cache_hits", "Hits", Counter::<u64>::default())
        .expect_err("the facade publishes it");
    assert!(error.to_string().contains("already registered"), "{error}");

    let refused = metrics.recorder().refused();
    let expected = [
        ("counter \"jobs\"", "\"jobs\" is already in the registry"),
        (
            "gauge \"jobs_total\"",
            "\"jobs_total\" is already in the registry",
        ),
        (
            "gauge \"http.server.active_requests\"",
            "is a metric of tower-prometheus",
        ),
        ("gauge \"pool.size\"", "already registered"),
        (
            "gauge \"cache.hits\"",
            "clashes with the metrics facade's \"cache_hits\"",
        ),
        (
            "gauge \"latency_count\"",
            "clashes with the metrics facade's \"latency\"",
        ),
    ];
    assert_eq!(refused.len(), expected.len(), "{refused:#?}");
    for ((what, why), message) in expected.iter().zip(&refused) {
        assert!(message.contains(what) && message.contains(why), "{message}");
    }

    let (text, _) = scrape(&metrics);
    let samples = parse(&text);
    assert_eq!(
        value(&samples, "jobs_total", &[]),
        Some(1.0),
        "the user's, untouched"
    );
    assert_eq!(value(&samples, "pool_size", &[]), Some(4.0));
    assert_eq!(value(&samples, "cache_hits_total", &[]), Some(1.0));
    assert_eq!(value(&samples, "latency_count", &[]), Some(1.0));
    assert!(!text.contains("http_server_active_requests"), "{text}");
}

/// With `Naming::AxumPrometheus`, the preset owns axum-prometheus' names: its own layer
/// kept through the facade would publish a second family of each, so the facade refuses
/// them and the preset's are the only ones in the scrape.
#[test]
fn the_axum_prometheus_preset_owns_its_names_in_the_facade() {
    let metrics = Metrics::builder()
        .process(false)
        .runtime(false)
        .http(
            tower_prometheus::HttpMetricsLayer::builder()
                .naming(tower_prometheus::Naming::AxumPrometheus),
        )
        .build()
        .expect("valid options");
    metrics::with_local_recorder(&metrics.recorder(), || {
        let labels = [("method", "GET"), ("status", "200"), ("endpoint", "/x")];
        counter!("axum_http_requests_total", &labels).increment(1);
        histogram!("axum_http_requests_duration_seconds", &labels).record(0.1);
        gauge!("axum_http_requests_pending", "method" => "GET", "endpoint" => "/x").increment(1);
        histogram!("axum_http_response_body_size", "method" => "GET").record(10.0);
    });
    let refused = metrics.recorder().refused();
    assert_eq!(refused.len(), 4, "{refused:#?}");
    assert!(
        refused
            .iter()
            .all(|message| message.contains("is a metric of tower-prometheus")),
        "{refused:#?}"
    );
    let (text, _) = checked_scrape(&metrics);
    assert!(!text.contains("axum_http"), "nothing recorded yet:\n{text}");
}

#[test]
fn local_recorders_keep_their_metrics_apart() {
    let first = quiet(MetricsRecorder::builder());
    let second = quiet(MetricsRecorder::builder());
    metrics::with_local_recorder(&first.recorder(), || {
        counter!("visits", "page" => "home").increment(1);
        metrics::with_local_recorder(&second.recorder(), || {
            counter!("visits", "page" => "home").increment(5);
        });
        counter!("visits", "page" => "home").increment(1);
    });
    // Outside: no local recorder, and no global one in this test: nothing recorded.
    let samples = parse(&scrape(&first).0);
    assert_eq!(
        value(&samples, "visits_total", &[("page", "home")]),
        Some(2.0)
    );
    let samples = parse(&scrape(&second).0);
    assert_eq!(
        value(&samples, "visits_total", &[("page", "home")]),
        Some(5.0)
    );
}

fn awkward_names() -> Metrics {
    let metrics = quiet(MetricsRecorder::builder());
    metrics::with_local_recorder(&metrics.recorder(), || {
        describe_counter!(
            "http.requests",
            Unit::Count,
            "Requests \\ served\nby the app \"x\""
        );
        describe_histogram!("payload", Unit::Bytes, "Payload sizes");
        describe_gauge!("cpu.share", Unit::Percent, "CPU share");
        describe_counter!("busy_total", Unit::Seconds, "Busy time");
        counter!("http.requests", "http.method" => "GET", "1st" => "a\"b\\c\nd").increment(2);
        counter!("http.requests", "1st" => "a\"b\\c\nd", "http.method" => "GET").increment(1);
        histogram!("payload", "le" => "x", "__kind" => "json").record(512.0);
        gauge!("cpu.share").set(50.0);
        gauge!("cpu.share").increment(25.0);
        gauge!("cpu.share").decrement(50.0);
        // Published in base units, values converted.
        describe_histogram!("render.time", Unit::Milliseconds, "Render time");
        histogram!("render.time").record(12.0);
        describe_counter!("cpu.used", Unit::Microseconds, "CPU used");
        counter!("cpu.used").increment(1_500_000);
        counter!("busy_total").absolute(7);
        counter!("busy_total").absolute(5);
        // Used first, described later: the name stays, the help text follows.
        gauge!("late.seconds").set(1.0);
        describe_gauge!("late.seconds", Unit::Milliseconds, "Described late");
        counter!("1xx").increment(1);
    });
    metrics
}

#[test]
fn names_labels_units_and_help_are_made_valid() {
    let metrics = awkward_names();
    let (text, openmetrics) = scrape(&metrics);
    let samples = parse(&text);
    assert_eq!(
        value(
            &samples,
            "http_requests_total",
            &[("http_method", "GET"), ("_st", "a\"b\\c\nd")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "payload_bytes_count",
            &[("exported_le", "x"), ("_kind", "json")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&samples, "cpu_share_ratio", &[]), Some(0.25));
    assert_eq!(value(&samples, "busy_seconds_total", &[]), Some(7.0));
    assert_eq!(
        value(&samples, "render_time_seconds_bucket", &[("le", "0.01")]),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "render_time_seconds_bucket", &[("le", "0.025")]),
        Some(1.0)
    );
    assert_eq!(value(&samples, "render_time_seconds_sum", &[]), Some(0.012));
    assert_eq!(value(&samples, "cpu_used_seconds_total", &[]), Some(1.5));
    assert_eq!(value(&samples, "late_seconds", &[]), Some(1.0));
    assert_eq!(value(&samples, "_xx_total", &[]), Some(1.0));
    assert!(
        text.contains("# HELP http_requests_total Requests \\\\ served by the app \"x\"\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP late_seconds Described late\n"),
        "{text}"
    );
    for unit in [
        "# UNIT payload_bytes bytes\n",
        "# UNIT cpu_share_ratio ratio\n",
        "# UNIT busy_seconds seconds\n",
    ] {
        assert!(openmetrics.contains(unit), "{unit} in {openmetrics}");
    }
    assert!(
        !openmetrics.contains("# UNIT late_seconds"),
        "{openmetrics}"
    );
    let names: BTreeSet<String> = families(&text).into_keys().collect();
    assert!(names.contains("http_requests_total"), "{names:?}");
    assert!(metrics.recorder().refused().is_empty());
}

#[test]
fn a_recorder_on_a_registry_of_its_own() {
    let mut registry = Registry::default();
    let recorder = MetricsRecorder::builder()
        .buckets([1.0, 2.0])
        .buckets_for_name("exact.one", [5.0])
        .buckets_for_prefix("exact", [7.0])
        .build(&mut registry)
        .expect("valid options");
    metrics::with_local_recorder(&recorder, || {
        histogram!("other").record(1.5);
        histogram!("exact.one").record(1.5);
        histogram!("exact.two").record(1.5);
    });
    let text = common::prometheus_text(&registry);
    let samples: Vec<Sample> = parse(&text);
    assert_eq!(
        value(&samples, "other_bucket", &[("le", "2")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&samples, "exact_one_bucket", &[("le", "5")]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "exact_two_bucket", &[("le", "7")]),
        Some(1.0)
    );
    assert_eq!(common::find(&samples, "exact_one_bucket", &[]).len(), 2);

    for invalid in [
        MetricsRecorder::builder().max_series(0),
        MetricsRecorder::builder().buckets([2.0, 1.0]),
        MetricsRecorder::builder().buckets_for_prefix("x", [f64::NAN]),
    ] {
        assert!(invalid.build(&mut Registry::default()).is_err());
    }
}

/// The families of a text exposition whose names start with `prefix`: type and the
/// label names of their samples (`le` and `quantile` left out).
fn shapes(text: &str, prefix: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let types = families(text);
    let samples = parse(text);
    types
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, kind)| {
            let labels = samples
                .iter()
                .filter(|s| s.name.starts_with(name.as_str()))
                .flat_map(|s| s.labels.keys().cloned())
                .filter(|label| label != "le" && label != "quantile")
                .collect();
            (name, (kind, labels))
        })
        .collect()
}

/// axum-prometheus's own layer, kept while dashboards move (the guide's "Coming from
/// axum-prometheus"), publishes through this crate's recorder the families, types and
/// label names that its own exporter set-up (metrics-exporter-prometheus, as
/// `PrometheusMetricLayer::pair` builds it) publishes for the same requests; only its
/// body-size summary becomes a histogram.
#[test]
fn axum_prometheus_metrics_keep_their_names_through_the_facade_checked_by_promtool() {
    use axum_prometheus::utils::SECONDS_DURATION_BUCKETS;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use tower::ServiceExt;

    fn requests(recorder: &dyn metrics::Recorder) {
        metrics::with_local_recorder(recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let layer = axum_prometheus::PrometheusMetricLayerBuilder::new()
                    .enable_response_body_size(true)
                    .build();
                let app: Router = Router::new()
                    .route("/items/{id}", get(|| async { "an item" }))
                    .route(
                        "/fail",
                        get(|| async { http::StatusCode::INTERNAL_SERVER_ERROR }),
                    )
                    .layer(layer);
                for uri in ["/items/1", "/items/2", "/fail", "/missing"] {
                    let request = Request::get(uri).body(Body::empty()).expect("valid");
                    let response = app.clone().oneshot(request).await.expect("infallible");
                    response.into_body().collect().await.expect("a body");
                }
            });
        });
    }

    let theirs = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("axum_http_requests_duration_seconds".into()),
            SECONDS_DURATION_BUCKETS,
        )
        .expect("buckets")
        .build_recorder();
    requests(&theirs);
    let their_text = theirs.handle().render();

    let metrics = quiet(
        MetricsRecorder::builder()
            .buckets_for_name("axum_http_response_body_size", [64.0, 1024.0, 65536.0]),
    );
    requests(&metrics.recorder());
    let (ours, _) = checked_scrape(&metrics);

    let mut expected = shapes(&their_text, "axum_");
    let body_size = expected
        .get_mut("axum_http_response_body_size")
        .expect("their body-size metric");
    assert_eq!(body_size.0, "summary");
    body_size.0 = "histogram".into();
    assert_eq!(expected.len(), 4, "{their_text}");
    assert_eq!(
        shapes(&ours, "axum_"),
        expected,
        "ours:\n{ours}\ntheirs:\n{their_text}"
    );
    let samples = parse(&ours);
    let labels = [
        ("method", "GET"),
        ("endpoint", "/items/{id}"),
        ("status", "200"),
    ];
    assert_eq!(
        value(&samples, "axum_http_requests_total", &labels),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            "axum_http_requests_duration_seconds_count",
            &labels
        ),
        Some(2.0)
    );
    let their_samples = parse(&their_text);
    assert_eq!(
        value(&their_samples, "axum_http_requests_total", &labels),
        Some(2.0)
    );
}

/// The expositions of the tests above, made of awkward names, label values and help
/// texts, overflow series and refused clashes, as promtool and the reference OpenMetrics
/// parser read them.
#[test]
fn promtool_and_the_openmetrics_parser_accept_the_facade_expositions() {
    for metrics in [over_the_cap(), clashing(), awkward_names()] {
        checked_scrape(&metrics);
    }
}
