//! Exemplars from the app's own spans, with a real Prometheus (Debian's 2.42), on
//! 127.0.0.1:
//!
//! 1. an OTLP/gRPC trace receiver of the test's (opentelemetry-proto's `TraceService`)
//!    keeps every span the invoicing app exports, the app started with
//!    `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at it;
//! 2. one Prometheus with `--enable-feature=exemplar-storage` scrapes the app;
//! 3. requests with a sampled `traceparent` (whose trace ids the test keeps), with an
//!    unsampled one, and without (the app starts the trace);
//! 4. every exemplar `/api/v1/query_exemplars` returns names a trace id and span id the
//!    receiver got for a server span; the callers' sampled traces come back, continued by
//!    the app's spans, and the app's own traces too; no unsampled caller's trace does.
//!
//! Needs `prometheus` from Debian; fails naming the install command when it is missing.

use std::collections::BTreeSet;
use std::fs;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monitoring_checks::stack::{
    Process, PromApi, eventually, free_port, get_status, require, start_invoicing,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;

/// The longest each phase of traffic may take to get its exemplar stored: Prometheus
/// scrapes every second, so this is a bound, not an expected time.
const PHASE: Duration = Duration::from_secs(60);

/// A span the receiver got: trace id, span id, parent span id (lower-case hex, as the
/// exemplars spell them) and whether it is a server span.
#[derive(Clone, Debug)]
struct Received {
    trace: String,
    span: String,
    parent: String,
    server: bool,
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut spans = self.spans.lock().expect("not poisoned");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        trace: hex(&span.trace_id),
                        span: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        server: span.kind == SpanKind::Server as i32,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Serves on a port of 127.0.0.1, on a thread of its own, until the process ends.
    fn start(&self) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("a bound address").port();
        listener.set_nonblocking(true).expect("non-blocking");
        let receiver = self.clone();
        thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a Tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(receiver))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await
                    .expect("the receiver serves");
            });
        });
        port
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("not poisoned").clone()
    }
}

fn random_hex(n: usize) -> String {
    let state = RandomState::new();
    (0..n)
        .map(|i| format!("{:02x}", state.hash_one((i, Instant::now())) as u8))
        .collect()
}

/// A Prometheus configuration scraping the app every second. JSON is YAML.
fn config(dir: &Path, app: &str) -> PathBuf {
    let config = json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "invoicing", "static_configs": [{"targets": [app]}]},
        ],
    });
    let path = dir.join("prometheus.yml");
    fs::write(&path, config.to_string()).expect("a Prometheus configuration");
    path
}

#[test]
fn exemplars_name_the_spans_the_app_exported() {
    require(&["prometheus"]);
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = tmp.path();
    let receiver = Receiver::default();
    let otlp = format!("http://127.0.0.1:{}", receiver.start());
    let (app_port, metrics_port) = (free_port(), free_port());
    let _app = start_invoicing(
        "invoicing",
        dir,
        app_port,
        metrics_port,
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            // The batch exporter's delay: half a second rather than five.
            ("OTEL_BSP_SCHEDULE_DELAY", "500"),
        ],
    );
    let port = free_port();
    let mut command = Command::new("prometheus");
    command
        .arg(format!(
            "--config.file={}",
            config(dir, &format!("127.0.0.1:{metrics_port}")).display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--enable-feature=exemplar-storage");
    let mut prometheus = Process::start("prometheus", dir, &mut command);
    let url = format!("http://127.0.0.1:{port}");
    prometheus.wait_for(&format!("{url}/-/ready"), Duration::from_secs(60));
    let api = PromApi::new(url);

    // Prometheus applies its targets a few seconds after it is ready: traffic before its
    // first scrape of the app would leave exemplars no scrape saw.
    eventually(Duration::from_secs(60), || {
        match api.scalar("up{job=\"invoicing\"}") {
            Some(1.0) => Ok(()),
            other => Err(format!("the app not scraped yet: up = {other:?}")),
        }
    });

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    // The trace and span ids of the exemplars Prometheus stored since the test began.
    let stored = || -> Result<Vec<(String, String)>, String> {
        let data = api.api(
            "query_exemplars",
            &[
                // Classic buckets (OpenMetrics): the exemplars are on the `_bucket` series.
                ("query", "http_server_request_duration_seconds_bucket"),
                ("start", &(now - 300.0).to_string()),
                ("end", &(now + 600.0).to_string()),
            ],
        )?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                let label = |name: &str| e["labels"][name].as_str().unwrap_or_default().to_owned();
                (label("trace_id"), label("span_id"))
            })
            .collect())
    };

    // Two phases, each sending until Prometheus has stored what it is for: a bucket's
    // exemplar is replaced at most once a second, by the first request offering one once
    // it is due, so interleaving the callers' requests with the app's own would let the
    // request sent first in each round win nearly every time.
    // 1. Callers with a sampled `traceparent`; 2. no header (the app starts the trace).
    // Unsampled callers in both: they never give an exemplar.
    let (mut sampled, mut unsampled) = (BTreeSet::new(), BTreeSet::new());
    let mut requests = 0;
    for own_phase in [false, true] {
        let deadline = Instant::now() + PHASE;
        loop {
            let (trace, skipped) = (random_hex(16), random_hex(16));
            let span = random_hex(8);
            let caller = format!("00-{trace}-{span}-01");
            let unsampled_caller = format!("00-{skipped}-{span}-00");
            let first: &[(&str, &str)] = if own_phase {
                &[]
            } else {
                &[("traceparent", caller.as_str())]
            };
            for path in ["/api/invoices", "/api/invoices/1", "/api/invoices/424242"] {
                let url = format!("http://127.0.0.1:{app_port}{path}");
                for headers in [first, &[("traceparent", unsampled_caller.as_str())]] {
                    get_status(&url, headers).unwrap_or_else(|e| panic!("{e}"));
                    requests += 1;
                }
            }
            if !own_phase {
                sampled.insert(trace);
            }
            unsampled.insert(skipped);
            let seen = stored().unwrap_or_default().into_iter().any(|(t, _)| {
                if own_phase {
                    !t.is_empty() && !sampled.contains(&t) && !unsampled.contains(&t)
                } else {
                    sampled.contains(&t)
                }
            });
            if seen {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no exemplar of {} stored after {PHASE:?} of traffic ({requests} requests)",
                if own_phase {
                    "a trace the app started"
                } else {
                    "a caller's sampled trace"
                }
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
    println!(
        "  {requests} requests, {} with a sampled traceparent",
        sampled.len() * 3
    );

    // Once the receiver has every span the exemplars name (the app exports in batches).
    let (exemplars, spans) = eventually(Duration::from_secs(30), || {
        let exemplars = stored()?;
        let spans = receiver.spans();
        let missing: Vec<&(String, String)> = exemplars
            .iter()
            .filter(|(trace, span)| {
                !spans
                    .iter()
                    .any(|s| s.server && &s.trace == trace && &s.span == span)
            })
            .collect();
        if exemplars.is_empty() {
            Err("query_exemplars returned no exemplar".to_owned())
        } else if !missing.is_empty() {
            Err(format!(
                "{} of {} exemplars name no server span the app exported, e.g. {:?} ({} spans received)",
                missing.len(),
                exemplars.len(),
                missing[0],
                spans.len()
            ))
        } else {
            Ok((exemplars, spans))
        }
    });
    let traces: BTreeSet<&str> = exemplars.iter().map(|(t, _)| t.as_str()).collect();
    let callers = traces.iter().filter(|t| sampled.contains(**t)).count();
    let own = traces.len() - callers;
    println!(
        "  /api/v1/query_exemplars: {} exemplars, every one a server span the receiver got \
         ({} spans received); {callers} traces of callers, {own} started by the app",
        exemplars.len(),
        spans.len()
    );
    let unsampled_back: Vec<&&str> = traces.iter().filter(|t| unsampled.contains(**t)).collect();
    assert!(
        unsampled_back.is_empty(),
        "unsampled callers' traces: {unsampled_back:?}"
    );
    assert!(callers > 0, "no caller's trace among the exemplars");
    assert!(own > 0, "no trace started by the app among the exemplars");
    // A caller's trace names the app's span, a child of the caller's, never the caller's.
    for (trace, span) in exemplars.iter().filter(|(t, _)| sampled.contains(t)) {
        let received = spans
            .iter()
            .find(|s| &s.trace == trace && &s.span == span)
            .expect("checked above");
        assert_ne!(received.parent, "0000000000000000", "{received:?}");
        assert!(!received.parent.is_empty(), "{received:?}");
    }
}
