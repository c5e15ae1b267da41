//! Native histograms and exemplars with a real Prometheus (Debian's 2.42), on 127.0.0.1:
//!
//! 1. the invoicing app (native histograms and exemplars on, feature `protobuf`) gets
//!    requests with sampled W3C `traceparent` headers, whose trace ids the test keeps, and
//!    requests without a trace or with an unsampled one;
//! 2. one Prometheus runs with `--enable-feature=native-histograms,exemplar-storage`,
//!    another without; both also scrape a listener of the test that records the `Accept`
//!    header each sends;
//! 3. through the first one's HTTP API: `rate(http_server_request_duration_seconds[1m])`
//!    has a `histogram` field, `histogram_quantile(0.99, sum(rate(…)))` is a number of
//!    seconds, `histogram_count` is positive, `/api/v1/query_exemplars` returns trace ids,
//!    all of them among those sent sampled; the `Accept` headers both sent are the ones the
//!    exporter's unit tests use (`src/exporter.rs`);
//! 4. through the second one's: the classic `_bucket` series are scraped, and the same
//!    `rate()` has no native histogram;
//! 5. the "(native)" panels of `grafana/dashboards/service-overview.json` (read with the
//!    shared dashboard walk): their native operand returns series from the first, the
//!    whole query (with its classic fallback) from the second.
//!
//! Needs `prometheus` from Debian; fails naming the install command when it is missing.

use std::collections::BTreeMap;
use std::fs;
use std::hash::BuildHasher;
use std::hash::RandomState;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monitoring_checks::dashboards;
use monitoring_checks::stack::{
    Process, PromApi, eventually, free_port, get_status, monitoring, require, start_invoicing,
    workspace,
};
use serde_json::{Value, json};

/// How long the test sends traced requests.
const TRAFFIC: Duration = Duration::from_secs(12);

/// A listener on 127.0.0.1 that answers every `GET` with a one-gauge exposition and
/// records the request's `Accept` header by path (`/native`, `/classic`: the scraper says
/// who it is in its `metrics_path`). Stops on drop.
struct AcceptRecorder {
    port: u16,
    seen: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AcceptRecorder {
    fn start() -> AcceptRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let port = listener.local_addr().expect("the bound address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some((path, accept)) = answer(stream) {
                                seen.lock()
                                    .expect("the recorder's map")
                                    .insert(path, accept);
                            }
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        AcceptRecorder {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The `Accept` header last sent to `path`, if any.
    fn accept(&self, path: &str) -> Option<String> {
        self.seen
            .lock()
            .expect("the recorder's map")
            .get(path)
            .cloned()
    }
}

impl Drop for AcceptRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream`, answers it and closes the connection: its path and
/// `Accept` header.
fn answer(mut stream: TcpStream) -> Option<(String, String)> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut buf = [0; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let accept = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("accept"))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    let body = "# TYPE capture_up gauge\ncapture_up 1\n";
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).ok()?;
    Some((path, accept))
}

/// `n` random bytes as lower-case hex (std's hasher keys are random per process).
fn random_hex(n: usize) -> String {
    let state = RandomState::new();
    let mut out = String::new();
    let mut i = 0u64;
    while out.len() < 2 * n {
        out.push_str(&format!("{:016x}", state.hash_one(i)));
        i += 1;
    }
    out.truncate(2 * n);
    out
}

/// The configuration of one Prometheus: the app and the recorder (at `/<kind>`). JSON is
/// YAML.
fn config(dir: &Path, kind: &str, app: &str, recorder: u16) -> std::path::PathBuf {
    let config = json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "invoicing", "static_configs": [{"targets": [app]}]},
            {"job_name": "capture", "metrics_path": format!("/{kind}"),
             "static_configs": [{"targets": [format!("127.0.0.1:{recorder}")]}]},
        ],
    });
    let path = dir.join(format!("prometheus-{kind}.yml"));
    fs::write(&path, config.to_string()).expect("a Prometheus configuration");
    path
}

fn has_histogram(series: &Value) -> bool {
    series.get("histogram").is_some()
}

/// Records each check, printing `ok` or `FAIL`; the test fails at the end with all the
/// failed ones.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn expect(&mut self, ok: bool, what: String) {
        println!("  {} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.0.push(what);
        }
    }
}

#[test]
fn prometheus_stores_native_histograms_and_exemplars_and_the_panels_fall_back_to_classic() {
    require(&["prometheus"]);
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path();
    let wait = Duration::from_secs(60);
    let (app_port, metrics_port) = (free_port(), free_port());
    // The API, for the traffic; the metrics listener (METRICS_ADDR), for Prometheus.
    let app_api = format!("127.0.0.1:{app_port}");
    let app_instance = format!("127.0.0.1:{metrics_port}");
    let app = start_invoicing("invoicing", dir, app_port, metrics_port, None, &[]);
    let recorder = AcceptRecorder::start();

    let mut servers = Vec::new();
    let mut apis = Vec::new();
    for (kind, flags) in [
        (
            "native",
            Some("--enable-feature=native-histograms,exemplar-storage"),
        ),
        ("classic", None),
    ] {
        let port = free_port();
        let mut command = Command::new("prometheus");
        command
            .arg(format!(
                "--config.file={}",
                config(dir, kind, &app_instance, recorder.port).display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("tsdb-{kind}")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags);
        let mut prometheus = Process::start(&format!("prometheus-{kind}"), dir, &mut command);
        let url = format!("http://127.0.0.1:{port}");
        prometheus.wait_for(&format!("{url}/-/ready"), wait);
        servers.push(prometheus);
        apis.push(PromApi::new(url));
    }
    let (native, classic) = (&apis[0], &apis[1]);

    // Traced requests, sampled (kept), and others that give no exemplar: none, and one
    // not sampled.
    let mut sent = Vec::new();
    let end = Instant::now() + TRAFFIC;
    while Instant::now() < end {
        let trace = random_hex(16);
        let span = random_hex(8);
        let sampled = format!("00-{trace}-{span}-01");
        let unsampled = format!("00-{}-{span}-00", "f".repeat(32));
        for path in ["/api/invoices", "/api/invoices/1", "/api/invoices/424242"] {
            let url = format!("http://{app_api}{path}");
            for headers in [
                &[("traceparent", sampled.as_str())][..],
                &[],
                &[("traceparent", unsampled.as_str())],
            ] {
                get_status(&url, headers).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        sent.push(trace);
        thread::sleep(Duration::from_millis(200));
    }
    println!(
        "  {} sampled traces sent, {} requests\n",
        sent.len(),
        sent.len() * 9
    );

    let mut checks = Checks::default();

    // With the flags: rate() gives native histograms.
    let q = "rate(http_server_request_duration_seconds[1m])";
    let result = eventually(Duration::from_secs(30), || {
        let result = native.query(q);
        if result.iter().any(has_histogram) {
            Ok(result)
        } else {
            Err(format!("{q}: no series with a histogram field: {result:?}"))
        }
    });
    let example = format!(
        r#"{{"metric": {}, "histogram": {}}}"#,
        result[0]["metric"], result[0]["histogram"]
    );
    println!(
        "  {q}: {} series with a histogram field, e.g.\n    {}",
        result.len(),
        example.chars().take(400).collect::<String>()
    );
    checks.expect(
        result
            .iter()
            .all(|s| has_histogram(s) && s.get("value").is_none()),
        format!("{q} returns native histograms only"),
    );

    let q = "histogram_quantile(0.99, sum(rate(http_server_request_duration_seconds[1m])))";
    let p99 = native.scalar(q);
    println!("  {q} = {p99:?}");
    checks.expect(
        p99.is_some_and(|v| v > 0.0 && v < 128.0),
        format!("{q} is a number of seconds"),
    );
    let q = "histogram_count(sum(rate(http_server_request_duration_seconds[1m])))";
    let count = native.scalar(q);
    println!("  {q} = {count:?}");
    checks.expect(count.is_some_and(|v| v > 0.0), format!("{q} is positive"));

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let ids: Vec<String> = eventually(Duration::from_secs(30), || {
        let data = native.api(
            "query_exemplars",
            &[
                ("query", "http_server_request_duration_seconds"),
                ("start", &(now - 300.0).to_string()),
                ("end", &(now + 60.0).to_string()),
            ],
        )?;
        let ids: Vec<String> = data
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                e["labels"]["trace_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if ids.is_empty() {
            Err(format!("query_exemplars returned no exemplar: {data}"))
        } else {
            Ok(ids)
        }
    });
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    println!(
        "  /api/v1/query_exemplars: {} exemplars, trace ids e.g. {:?}",
        ids.len(),
        &distinct[..distinct.len().min(3)]
    );
    let unknown: Vec<&String> = distinct.iter().filter(|id| !sent.contains(id)).collect();
    checks.expect(
        unknown.is_empty(),
        format!("every exemplar's trace_id is one the test sent sampled (others: {unknown:?})"),
    );
    checks.expect(
        !distinct.is_empty(),
        "at least one trace id sent comes back".into(),
    );

    // Without the flags, the classic series.
    let q = "http_server_request_duration_seconds_bucket";
    let result = eventually(Duration::from_secs(30), || {
        let result = classic.query(q);
        if result.is_empty() {
            Err(format!("without the flags, {q} has no series"))
        } else {
            Ok(result)
        }
    });
    checks.expect(
        !result.is_empty(),
        format!("without the flags, {q} has {} series", result.len()),
    );
    let q = "rate(http_server_request_duration_seconds[1m])";
    checks.expect(
        !classic.query(q).iter().any(has_histogram),
        format!("without the flags, {q} has no native histogram"),
    );
    checks.expect(
        native
            .query("http_server_request_duration_seconds_bucket")
            .is_empty(),
        "with the flags, the native histogram replaces the _bucket series (Prometheus 2.42 keeps one)".into(),
    );

    // The Accept headers both sent are the ones the exporter's unit tests use.
    let source = fs::read_to_string(workspace().join("src/exporter.rs")).expect("src/exporter.rs");
    let mut accepts = BTreeMap::new();
    for kind in ["native", "classic"] {
        let accept = eventually(Duration::from_secs(30), || {
            recorder
                .accept(&format!("/{kind}"))
                .ok_or_else(|| format!("the {kind} Prometheus has not scraped the recorder"))
        });
        println!("  {kind} Prometheus sends Accept: {accept}");
        checks.expect(
            source.contains(&format!("\"{accept}\"")),
            format!("the {kind} Accept header is in src/exporter.rs's unit tests"),
        );
        accepts.insert(kind, accept);
    }
    checks.expect(
        accepts["native"].contains("vnd.google.protobuf"),
        "with the flags, Prometheus asks for protobuf".into(),
    );
    checks.expect(
        !accepts["classic"].contains("vnd.google.protobuf"),
        "without them, it does not".into(),
    );

    // The dashboard's native panels, `(native) or (classic)` (`or on ()` for the heatmap,
    // whose operands share no label): the native operand returns series from the
    // Prometheus with native histograms, the whole query from both.
    let mut values = dashboards::intervals("10s");
    for (name, value) in [("job", "invoicing"), ("instance", ".*"), ("route", ".*")] {
        values.insert(name.to_owned(), value.to_owned());
    }
    let all = dashboards::load(&monitoring().join("grafana/dashboards"));
    let overview = all
        .iter()
        .find(|d| d.file == "service-overview.json")
        .expect("grafana/dashboards/service-overview.json");
    let queries: Vec<_> = overview
        .queries()
        .into_iter()
        .filter(|q| q.title.ends_with("(native)"))
        .collect();
    let mut titles: Vec<&str> = queries.iter().map(|q| q.title.as_str()).collect();
    titles.dedup();
    checks.expect(
        titles.len() >= 2,
        format!("the dashboard has native quantile and heatmap panels: {titles:?}"),
    );
    for query in &queries {
        let expr = dashboards::substitute(&query.expr, &values);
        let operand = expr
            .split(") or ")
            .next()
            .unwrap_or_default()
            .trim_start_matches('(');
        let result = native.query(operand);
        let kind = if result.iter().any(has_histogram) {
            "histogram"
        } else {
            "value"
        };
        checks.expect(
            !result.is_empty(),
            format!(
                "{} [{}] native: {} series ({kind}s) for {operand}",
                query.title,
                query.ref_id,
                result.len()
            ),
        );
        let result = classic.query(&expr);
        checks.expect(
            !result.is_empty(),
            format!(
                "{} [{}] without the flags (classic fallback): {} series",
                query.title,
                query.ref_id,
                result.len()
            ),
        );
    }

    for api in [native, classic] {
        let targets = api.api("targets", &[]).unwrap_or_else(|e| panic!("{e}"));
        for target in targets["activeTargets"].as_array().into_iter().flatten() {
            checks.expect(
                target["health"] == "up",
                format!(
                    "target {} is up ({})",
                    target["scrapeUrl"].as_str().unwrap_or_default(),
                    target["lastError"]
                        .as_str()
                        .filter(|e| !e.is_empty())
                        .unwrap_or("no error")
                ),
            );
        }
    }
    assert!(
        checks.0.is_empty(),
        "{} checks failed:\n  {}",
        checks.0.len(),
        checks.0.join("\n  ")
    );
    drop((servers, recorder, app));
}
