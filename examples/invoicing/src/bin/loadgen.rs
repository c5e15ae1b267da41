//! A traffic generator for the invoicing API, so that dashboards have something to show.
//!
//! ```sh
//! cargo run --release -p invoicing --bin loadgen -- --url http://127.0.0.1:3000 --duration 60s --rate 200
//! ```
//!
//! It creates sellers and clients, then sends `--rate` requests per second for
//! `--duration`: invoices created and read, lists with filters, clients created, and
//! realistic mistakes (404s for missing invoices, 422s for invalid ones). Every request
//! has an expected status; anything else, a timeout or a connection error is an error.
//!
//! Bounded by design: loopback targets only (`127.0.0.0/8`, `::1`, `localhost`), at most
//! [`MAX_DURATION`] and [`MAX_RATE`], at most `--concurrency` requests in flight (a tick
//! that finds them all busy is skipped and counted, not queued). It prints a progress
//! line every second on stderr and a summary (requests, errors, p50/p99) on stdout.
//!
//! `clap` reads the options (`loadgen --help`), `humantime` the durations, and an
//! `hdrhistogram` keeps the latencies for the quantiles.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::http::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// The longest run accepted.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The highest rate accepted, in requests per second.
const MAX_RATE: f64 = 5000.0;
/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a bounded mix of realistic requests to the invoicing API on loopback.
#[derive(Debug, PartialEq, Parser)]
#[command(name = "loadgen", version)]
struct Options {
    /// The API, on a loopback address only (127.0.0.0/8, `[::1]`, localhost).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// How long to send: 500ms, 30s, 5m (at most 1h).
    #[arg(long, default_value = "60s", value_parser = run_duration)]
    duration: Duration,
    /// Requests per second (above 0, at most 5000).
    #[arg(long, default_value_t = 200.0, value_parser = rate)]
    rate: f64,
    /// Requests in flight at most; a tick that finds them all busy is skipped.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
}

/// A `humantime` duration above 0, at most [`MAX_DURATION`].
fn run_duration(raw: &str) -> Result<Duration, String> {
    match humantime::parse_duration(raw) {
        Ok(duration) if !duration.is_zero() && duration <= MAX_DURATION => Ok(duration),
        Ok(_) => Err("more than 0, at most 1h".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= MAX_RATE => Ok(rate),
        _ => Err(format!("a number above 0, at most {MAX_RATE}")),
    }
}

/// Locks `mutex`, even if a request task panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The loopback socket address `url` points to, or why it is refused.
async fn loopback_target(url: &str) -> Result<SocketAddr, String> {
    let uri: Uri = url
        .parse()
        .map_err(|error| format!("--url {url:?}: {error}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("--url {url:?}: only http:// is supported"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "--url {url:?}: give the server's root, without a path"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("--url {url:?}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let refuse = |why: String| {
        Err(format!(
            "refusing to send load to {host}: {why}. loadgen only targets loopback \
             addresses (127.0.0.0/8, [::1], localhost)"
        ))
    };
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if ip.is_loopback() {
            Ok(SocketAddr::new(ip, port))
        } else {
            refuse(format!("{ip} is not a loopback address"))
        };
    }
    if !bare.eq_ignore_ascii_case("localhost") {
        return refuse("not an IP address nor localhost".into());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|error| format!("cannot resolve {host}: {error}"))?
        .collect();
    match addrs.iter().find(|addr| !addr.ip().is_loopback()) {
        Some(addr) => refuse(format!("it resolves to {}", addr.ip())),
        None => addrs
            .first()
            .copied()
            .ok_or_else(|| format!("{host} resolves to nothing")),
    }
}

/// xorshift64*: enough randomness to mix the traffic, no dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64);
        Self(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// What a request does, and the status it should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    ReadInvoice,
    InvoicePdf,
    ListInvoices,
    CreateInvoice,
    ReadSeller,
    ListClients,
    CreateClient,
    MissingInvoice,
    InvalidInvoice,
}

impl Action {
    /// The mix, in percent.
    const WEIGHTS: [(Action, u64); 9] = [
        (Action::ReadInvoice, 27),
        (Action::InvoicePdf, 5),
        (Action::ListInvoices, 10),
        (Action::CreateInvoice, 25),
        (Action::ReadSeller, 5),
        (Action::ListClients, 5),
        (Action::CreateClient, 5),
        (Action::MissingInvoice, 10),
        (Action::InvalidInvoice, 8),
    ];

    fn random(rng: &mut Rng) -> Self {
        let total: u64 = Self::WEIGHTS.iter().map(|(_, weight)| weight).sum();
        let mut roll = rng.below(total);
        for (action, weight) in Self::WEIGHTS {
            if roll < weight {
                return action;
            }
            roll -= weight;
        }
        Action::ReadInvoice
    }

    fn name(self) -> &'static str {
        match self {
            Action::ReadInvoice => "GET invoice",
            Action::InvoicePdf => "GET invoice PDF",
            Action::ListInvoices => "list invoices",
            Action::CreateInvoice => "create invoice",
            Action::ReadSeller => "GET seller",
            Action::ListClients => "list clients",
            Action::CreateClient => "create client",
            Action::MissingInvoice => "missing invoice (404)",
            Action::InvalidInvoice => "invalid invoice (422)",
        }
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Ids known to exist, shared by the request tasks.
struct Known {
    sellers: Vec<i64>,
    clients: Mutex<Vec<i64>>,
    invoices: Mutex<Vec<i64>>,
}

/// What the run measured.
struct Stats {
    /// Microseconds, from 1 µs to [`REQUEST_TIMEOUT`] and beyond (auto-resized), 3 digits.
    latencies_us: Mutex<Histogram<u64>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    by_action: Mutex<BTreeMap<Action, u64>>,
    sent: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

impl Stats {
    fn new() -> Result<Self, String> {
        Ok(Self {
            latencies_us: Mutex::new(Histogram::new(3).map_err(|error| error.to_string())?),
            statuses: Mutex::default(),
            errors: Mutex::default(),
            by_action: Mutex::default(),
            sent: AtomicU64::default(),
            done: AtomicU64::default(),
            failed: AtomicU64::default(),
            skipped: AtomicU64::default(),
        })
    }

    fn record(
        &self,
        action: Action,
        latency: Duration,
        outcome: Result<StatusCode, String>,
        expected: StatusCode,
    ) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // Auto-resizing: recording fails only past u64::MAX / 2 µs.
        let _ = lock(&self.latencies_us).record(micros);
        *lock(&self.by_action).entry(action).or_default() += 1;
        let error = match outcome {
            Ok(status) => {
                *lock(&self.statuses).entry(status.as_u16()).or_default() += 1;
                (status != expected)
                    .then(|| format!("{}: {status} instead of {expected}", action.name()))
            }
            Err(error) => Some(format!("{}: {error}", action.name())),
        };
        if let Some(error) = error {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *lock(&self.errors).entry(error).or_default() += 1;
        }
    }
}

struct Target {
    client: HttpClient,
    base: String,
}

impl Target {
    /// One request: its status and body, or a transport error or timeout.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(body.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).map_err(|error| error.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                let mut message = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    let _ = write!(message, ": {cause}");
                    source = cause.source();
                }
                message
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| error.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
    }

    /// A POST that must answer 201 with an id, during set-up.
    async fn create(&self, path: &str, body: &Value) -> Result<i64, String> {
        let (status, bytes) = self.send(Method::POST, path, Some(body)).await?;
        let created: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match (status, created["id"].as_i64()) {
            (StatusCode::CREATED, Some(id)) => Ok(id),
            _ => Err(format!(
                "POST {path} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )),
        }
    }
}

fn siret(rng: &mut Rng) -> String {
    format!("{:014}", rng.below(100_000_000_000_000))
}

fn invoice_body(rng: &mut Rng, known: &Known, number: &str) -> Value {
    let client = *rng.pick(&lock(&known.clients));
    let lines: Vec<Value> = (0..1 + rng.below(4))
        .map(|n| {
            json!({
                "description": format!("Item {n}"),
                "quantity": (1 + rng.below(40)) as f64 / 4.0,
                "unit_price_cents": 100 + rng.below(50_000),
                "vat_rate": *rng.pick(&[20.0, 10.0, 5.5, 2.1, 0.0]),
            })
        })
        .collect();
    json!({
        "seller_id": *rng.pick(&known.sellers),
        "client_id": client,
        "number": number,
        "issue_date": format!("2024-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28)),
        "status": *rng.pick(&["draft", "draft", "issued", "paid", "cancelled"]),
        "lines": lines,
    })
}

/// Runs one random action and records it.
async fn act(target: Arc<Target>, known: Arc<Known>, stats: Arc<Stats>, seed: u64, number: String) {
    let mut rng = Rng(seed | 1);
    let action = Action::random(&mut rng);
    let pick = |ids: &Mutex<Vec<i64>>, rng: &mut Rng| *rng.pick(&lock(ids));
    let (method, path, body, expected) = match action {
        Action::ReadInvoice => {
            let id = pick(&known.invoices, &mut rng);
            (
                Method::GET,
                format!("/api/invoices/{id}"),
                None,
                StatusCode::OK,
            )
        }
        Action::InvoicePdf => {
            let id = pick(&known.invoices, &mut rng);
            (
                Method::GET,
                format!("/api/invoices/{id}/pdf"),
                None,
                StatusCode::OK,
            )
        }
        Action::ListInvoices => {
            let status = rng.pick(&["draft", "issued", "paid", "cancelled"]);
            let seller = rng.pick(&known.sellers);
            let path = if rng.below(2) == 0 {
                format!("/api/invoices?status={status}&limit=20")
            } else {
                format!(
                    "/api/invoices?seller_id={seller}&limit=10&offset={}",
                    rng.below(5) * 10
                )
            };
            (Method::GET, path, None, StatusCode::OK)
        }
        Action::CreateInvoice => {
            let body = invoice_body(&mut rng, &known, &number);
            (
                Method::POST,
                "/api/invoices".into(),
                Some(body),
                StatusCode::CREATED,
            )
        }
        Action::ReadSeller => {
            let id = rng.pick(&known.sellers);
            (
                Method::GET,
                format!("/api/sellers/{id}"),
                None,
                StatusCode::OK,
            )
        }
        Action::ListClients => (
            Method::GET,
            "/api/clients?limit=20".into(),
            None,
            StatusCode::OK,
        ),
        Action::CreateClient => {
            let body = json!({"name": format!("Client {number}"), "city": "Lyon", "email": "ap@example.com"});
            (
                Method::POST,
                "/api/clients".into(),
                Some(body),
                StatusCode::CREATED,
            )
        }
        Action::MissingInvoice => {
            let id = 1_000_000_000 + rng.below(1_000_000);
            (
                Method::GET,
                format!("/api/invoices/{id}"),
                None,
                StatusCode::NOT_FOUND,
            )
        }
        Action::InvalidInvoice => {
            let mut body = invoice_body(&mut rng, &known, &number);
            match rng.below(3) {
                0 => body["lines"] = json!([]),
                1 => body["issue_date"] = json!("2024-02-30"),
                _ => body["lines"][0]["quantity"] = json!(-1),
            }
            (
                Method::POST,
                "/api/invoices".into(),
                Some(body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    let start = Instant::now();
    let outcome = target.send(method, &path, body.as_ref()).await;
    let latency = start.elapsed();
    if let Ok((StatusCode::CREATED, bytes)) = &outcome {
        let id = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|created| created["id"].as_i64());
        if let Some(id) = id {
            match action {
                Action::CreateInvoice => lock(&known.invoices).push(id),
                Action::CreateClient => lock(&known.clients).push(id),
                _ => {}
            }
        }
    }
    stats.record(action, latency, outcome.map(|(status, _)| status), expected);
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

async fn run(options: Options) -> Result<bool, String> {
    let addr = loopback_target(&options.url).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::from(options.concurrency))
        .build(connector);
    let target = Arc::new(Target {
        client,
        base: format!("http://{addr}"),
    });

    // Set-up: the server answers, and some sellers, clients and invoices exist.
    match target.send(Method::GET, "/health", None).await {
        Ok((StatusCode::OK, _)) => {}
        Ok((status, _)) => return Err(format!("{}/health answered {status}", target.base)),
        Err(error) => {
            return Err(format!(
                "cannot reach {} ({error}); is the server running? \
                 (cargo run --release -p invoicing)",
                target.base
            ));
        }
    }
    let mut rng = Rng::seeded();
    let run_id = format!("{:x}", rng.next() & 0xFF_FFFF);
    let mut sellers = Vec::new();
    for n in 0..3 {
        let body = json!({"name": format!("Seller {run_id}-{n}"), "siret": siret(&mut rng), "city": "Paris"});
        sellers.push(target.create("/api/sellers", &body).await?);
    }
    let mut clients = Vec::new();
    for n in 0..5 {
        let body = json!({"name": format!("Client {run_id}-{n}"), "country": "FR"});
        clients.push(target.create("/api/clients", &body).await?);
    }
    let known = Arc::new(Known {
        sellers,
        clients: Mutex::new(clients),
        invoices: Mutex::new(Vec::new()),
    });
    for n in 0..10 {
        let body = invoice_body(&mut rng, &known, &format!("LG-{run_id}-seed-{n}"));
        let id = target.create("/api/invoices", &body).await?;
        lock(&known.invoices).push(id);
    }

    eprintln!(
        "loadgen: set-up sent 19 requests (GET /health, 3 sellers, 5 clients, 10 invoices), \
         not counted in the summary"
    );
    eprintln!(
        "loadgen: {} for {:?} at {}/s, at most {} in flight",
        target.base, options.duration, options.rate, options.concurrency
    );
    let stats = Arc::new(Stats::new()?);
    let concurrency = usize::from(options.concurrency);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut next_progress = started + Duration::from_secs(1);
    let tty = std::io::stderr().is_terminal();
    let mut number = 0u64;
    loop {
        ticks.tick().await;
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(
                &stats,
                started,
                options.duration,
                permits.available_permits(),
                concurrency,
                tty,
            );
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        number += 1;
        stats.sent.fetch_add(1, Ordering::Relaxed);
        let task = act(
            target.clone(),
            known.clone(),
            stats.clone(),
            rng.next(),
            format!("LG-{run_id}-{number}"),
        );
        tokio::spawn(async move {
            task.await;
            drop(permit);
        });
    }
    // Let the requests in flight finish (each is bounded by REQUEST_TIMEOUT).
    let drained = tokio::time::timeout(
        REQUEST_TIMEOUT + Duration::from_secs(1),
        permits.acquire_many(u32::from(options.concurrency)),
    )
    .await
    .is_ok_and(|permit| permit.is_ok());
    let elapsed = started.elapsed();
    progress(
        &stats,
        started,
        options.duration,
        permits.available_permits(),
        concurrency,
        tty,
    );
    if tty {
        eprintln!();
    }
    if !drained {
        eprintln!("loadgen: some requests were still in flight at the end");
    }
    Ok(summary(&options, &target.base, &stats, elapsed))
}

fn progress(
    stats: &Stats,
    started: Instant,
    planned: Duration,
    free: usize,
    concurrency: usize,
    tty: bool,
) {
    let elapsed = started.elapsed();
    let done = stats.done.load(Ordering::Relaxed);
    let line = format!(
        "[{:>5.1}s/{:.0}s] sent {} done {} errors {} in flight {} skipped {} ({:.1} req/s)",
        elapsed.as_secs_f64().min(planned.as_secs_f64()),
        planned.as_secs_f64(),
        stats.sent.load(Ordering::Relaxed),
        done,
        stats.failed.load(Ordering::Relaxed),
        concurrency - free,
        stats.skipped.load(Ordering::Relaxed),
        done as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    let mut stderr = std::io::stderr().lock();
    let _ = if tty {
        write!(stderr, "\r{line}\x1b[K")
    } else {
        writeln!(stderr, "{line}")
    };
    let _ = stderr.flush();
}

/// Prints the summary; `true` when no request failed.
fn summary(options: &Options, base: &str, stats: &Stats, elapsed: Duration) -> bool {
    let latencies = lock(&stats.latencies_us);
    let done = latencies.len();
    let failed = stats.failed.load(Ordering::Relaxed);
    let statuses = lock(&stats.statuses);
    let by_action = lock(&stats.by_action);
    let errors = lock(&stats.errors);
    println!("loadgen summary");
    println!("  target     {base}");
    println!(
        "  duration   {:.1} s (planned {:?}), planned rate {}/s, achieved {:.1}/s",
        elapsed.as_secs_f64(),
        options.duration,
        options.rate,
        done as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "  requests   {done} (skipped at the concurrency limit: {})",
        stats.skipped.load(Ordering::Relaxed)
    );
    println!(
        "  errors     {failed} ({:.2} %)",
        if done == 0 {
            0.0
        } else {
            100.0 * failed as f64 / done as f64
        }
    );
    let statuses: Vec<String> = statuses
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect();
    println!("  statuses   {}", statuses.join(", "));
    let actions: Vec<String> = by_action
        .iter()
        .map(|(action, n)| format!("{}: {n}", action.name()))
        .collect();
    println!("  actions    {}", actions.join(", "));
    println!(
        "  latency    p50 {}  p90 {}  p99 {}  max {}",
        ms(latencies.value_at_quantile(0.50)),
        ms(latencies.value_at_quantile(0.90)),
        ms(latencies.value_at_quantile(0.99)),
        ms(latencies.max()),
    );
    for (error, n) in errors.iter().take(10) {
        println!("  error      {n} × {error}");
    }
    failed == 0
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Options::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("loadgen").chain(list.iter().copied()))
    }

    #[test]
    fn durations() {
        assert_eq!(run_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(run_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(run_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(run_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["0s", "2h", "-1s", "s", "10x", "15", ""] {
            assert!(run_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments() {
        let options = args(&[
            "--url",
            "http://127.0.0.1:8080",
            "--duration=30s",
            "--rate",
            "50",
        ])
        .expect("valid arguments");
        assert_eq!(options.url, "http://127.0.0.1:8080");
        assert_eq!(options.duration, Duration::from_secs(30));
        assert_eq!(options.rate, 50.0);
        assert_eq!(options.concurrency, 64);
        for bad in [
            &["--rate", "0"][..],
            &["--rate", "100000"],
            &["--concurrency", "0"],
            &["--concurrency", "1025"],
            &["--url"],
            &["--what"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn only_loopback_targets() {
        assert_eq!(
            loopback_target("http://127.0.0.1:3000").await,
            Ok("127.0.0.1:3000".parse().expect("a loopback target"))
        );
        assert_eq!(
            loopback_target("http://127.0.0.2:80/").await,
            Ok("127.0.0.2:80".parse().expect("a loopback target"))
        );
        assert_eq!(
            loopback_target("http://[::1]:3000").await,
            Ok("[::1]:3000".parse().expect("a loopback target"))
        );
        for url in [
            "http://10.0.0.1:3000",
            "http://192.168.1.10",
            "http://8.8.8.8",
            "http://0.0.0.0:3000",
            "http://[::]:3000",
            "http://example.com",
            "http://127.0.0.1.nip.io",
            "https://127.0.0.1:3000",
            "http://127.0.0.1:3000/api",
        ] {
            assert!(loopback_target(url).await.is_err(), "{url}");
        }
        let refused = loopback_target("http://10.1.2.3:3000")
            .await
            .expect_err("refused");
        assert!(refused.contains("only targets loopback"), "{refused}");
    }
}
