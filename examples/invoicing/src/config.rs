//! Configuration: each setting is a flag and an environment variable (the flag wins), read
//! by `clap`; `invoicing --help` lists them with their defaults. See the table in
//! `README.md`.
//!
//! A value the service cannot use stops it at start-up with `clap`'s message, which
//! names the setting and its variable (`invalid value '70000' for '--port <PORT>'`); an
//! empty variable is such a value. Values are checked for what the service will do with
//! them, not only for their syntax: a database URL must name a SQLite file, the PDP's
//! address must be `host:port`, durations have an upper bound.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser};

/// What the service needs to start.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "invoicing",
    version,
    about = "An invoicing API instrumented with tower-prometheus"
)]
pub struct Config {
    /// Address of the API (`0.0.0.0` in a container).
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port of the API (`0`: any free port, printed at start-up).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// SQLite database file (`sqlite://path`, `sqlite:///absolute/path`); the file and its
    /// folder are created if missing. Nothing else: no other database, no in-memory one.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/invoicing.db",
        value_parser = DatabaseUrl
    )]
    pub database_url: String,
    /// Where attachments are stored; served under `/uploads/`.
    #[arg(long, env = "UPLOADS_DIR", default_value = "data/uploads")]
    pub uploads_dir: PathBuf,
    /// PDF/A-3 invoices; served under `/pdf-a3/`.
    #[arg(long, env = "PDF_DIR", default_value = "data/pdf-a3")]
    pub pdf_dir: PathBuf,
    /// Largest attachment accepted, in bytes (413 beyond).
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_bytes: u64,
    /// Where `/metrics` is served: its own listener, `host:port` (`0.0.0.0:9100` in a
    /// container), so that the API's port never exposes it; `api`: on the API's port.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9100")]
    pub metrics_addr: MetricsAddr,
    /// `false`: no HTTP metrics layer and no `/metrics`, for overhead measurements.
    #[arg(long, env = "METRICS_ENABLED", default_value_t = true, action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub metrics_enabled: bool,
    /// The metric and label names of the HTTP metrics: `otel` (OpenTelemetry, the crate's
    /// default) or `promclient` (those of a Node.js `prom-client` + Express set-up), the
    /// two presets `monitoring/` generates rules and dashboards for.
    #[arg(long, env = "METRICS_NAMING", value_enum, default_value_t = MetricsNaming::Otel)]
    pub metrics_naming: MetricsNaming,
    /// Where invoice PDFs are generated: `blocking-pool` (Tokio's blocking threads) or
    /// `runtime` (inside the request's future, blocking its worker: only to show the
    /// difference in the task metrics).
    #[arg(long, env = "PDF_GENERATION", value_enum, default_value_t = PdfGeneration::BlockingPool)]
    pub pdf_generation: PdfGeneration,
    /// Polls of a request's future at least this long count as slow in
    /// `tokio_task_slow_polls_total` (a poll that long delays every other request on its
    /// worker as much).
    #[arg(long, env = "SLOW_POLL_THRESHOLD", default_value = "1ms", value_parser = duration)]
    pub slow_poll_threshold: Duration,
    /// The PDP issued invoices are submitted to, `host:port` (gRPC, plaintext, no scheme;
    /// an IPv6 address in brackets); unset: invoices are not submitted.
    #[arg(long, env = "PDP_ADDR", value_parser = pdp_addr)]
    pub pdp_addr: Option<String>,
    /// Deadline of each attempt to submit an invoice to the PDP (sent as
    /// `grpc-timeout`); at most 1 h.
    #[arg(long, env = "PDP_TIMEOUT", default_value = "2s", value_parser = short_duration)]
    pub pdp_timeout: Duration,
    /// Longest wait between two attempts of a submission the PDP did not answer: the
    /// waits double from 250 ms up to it. At most 1 h.
    #[arg(long, env = "PDP_RETRY_MAX", default_value = "30s", value_parser = short_duration)]
    pub pdp_retry_max: Duration,
    /// Where spans are exported, over OTLP/gRPC (`http://tempo:4317`); unset: they are
    /// not, and the HTTP metrics' exemplars come from callers' `traceparent` headers
    /// instead of the service's own spans.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// How the connections are served.
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// The naming preset of the HTTP metrics (`tower_prometheus::Naming`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsNaming {
    /// `Naming::OpenTelemetry`: `http_server_request_duration_seconds{http_route, …}`.
    #[default]
    Otel,
    /// `Naming::PromClient`: `http_request_duration_seconds{route, …}`.
    #[value(name = "promclient")]
    PromClient,
}

impl From<MetricsNaming> for tower_prometheus::Naming {
    fn from(naming: MetricsNaming) -> Self {
        match naming {
            MetricsNaming::Otel => Self::OpenTelemetry,
            MetricsNaming::PromClient => Self::PromClient,
        }
    }
}

/// Where `GET /api/invoices/{id}/pdf` generates its PDF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PdfGeneration {
    /// On Tokio's blocking pool (`spawn_blocking`): the request's future only waits, and
    /// the workers go on serving other requests.
    #[default]
    BlockingPool,
    /// Inside the request's future: the generation holds its worker thread, and every
    /// request queued on that worker waits. For demonstrations and tests only.
    Runtime,
}

/// The limits of the server: see `crate::serve`. Durations are written `500ms`, `30s`,
/// `2m` (`humantime`).
#[derive(Clone, Copy, Debug, Args)]
pub struct ServeConfig {
    /// Time for a client to send a request's headers, counted from the moment the
    /// connection waits for a request: it also closes idle keep-alive connections.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Time for a client to send a request's whole body, from its arrival (408 beyond).
    #[arg(long, env = "REQUEST_BODY_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub request_body_timeout: Duration,
    /// Time for the service to answer, body reading included (503 beyond).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "90s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Connections served at once; more are accepted and closed at once, counted in
    /// `http_server_rejected_connections_total`. Lowered at start-up to what the
    /// open-files limit (`ulimit -n`) allows.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Time the requests in flight have to finish on SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

/// The longest duration a setting takes: beyond, timers and deadlines overflow (tonic
/// panics on a `grpc-timeout` of a trillion hours), and nothing the service waits for
/// takes a day.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The longest deadline of a PDP call and wait between two attempts.
const MAX_PDP_DURATION: Duration = Duration::from_secs(3600);

/// A duration in `humantime`'s syntax, more than 0 and at most `max`.
fn bounded_duration(value: &str, max: Duration) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if duration.is_zero() => Err("must be more than 0".into()),
        Ok(duration) if duration > max => Err(format!(
            "must be at most {}",
            humantime::format_duration(max)
        )),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// A positive duration in `humantime`'s syntax, at most a day.
fn duration(value: &str) -> Result<Duration, String> {
    bounded_duration(value, MAX_DURATION)
}

/// A positive duration in `humantime`'s syntax, at most an hour.
fn short_duration(value: &str) -> Result<Duration, String> {
    bounded_duration(value, MAX_PDP_DURATION)
}

/// A SQLite URL naming a file: `sqlite://data/invoicing.db`, `sqlite:///srv/x.db`.
///
/// Refused: an empty value (SQLite would open a private temporary database per pooled
/// connection), another scheme (`postgres://…` would be read as a file named
/// `postgres:`), an in-memory database (private to each pooled connection too), and the
/// parameters `sqlx` does not know.
fn database_url(value: &str) -> Result<String, String> {
    const EXAMPLE: &str = "sqlite://data/invoicing.db";
    let Some(rest) = value
        .strip_prefix("sqlite://")
        .or_else(|| value.strip_prefix("sqlite:"))
    else {
        return Err(match value.split_once("://") {
            _ if value.is_empty() => format!("empty: a SQLite file is needed, such as {EXAMPLE}"),
            Some((scheme, _)) => {
                format!("a {scheme} URL: the service stores its data in SQLite only ({EXAMPLE})")
            }
            None => format!("not a SQLite URL: {EXAMPLE}"),
        });
    };
    let (file, params) = rest.split_once('?').unwrap_or((rest, ""));
    if file.is_empty() {
        return Err(format!("names no file: {EXAMPLE}"));
    }
    let in_memory = file == ":memory:"
        || params
            .split('&')
            .any(|param| param.eq_ignore_ascii_case("mode=memory"));
    if in_memory {
        return Err(format!(
            "an in-memory database is private to each connection of the pool: give a file ({EXAMPLE})"
        ));
    }
    sqlx::sqlite::SqliteConnectOptions::from_str(value).map_err(|error| error.to_string())?;
    Ok(value.to_owned())
}

/// The parser of `DATABASE_URL`: [`database_url`], with an error message that shows the
/// value with its password masked (`postgres://user:***@db/invoicing`): a refused URL is
/// printed on standard error, which ends up in logs.
#[derive(Clone, Copy, Debug)]
struct DatabaseUrl;

impl clap::builder::TypedValueParser for DatabaseUrl {
    type Value = String;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let invalid = |shown: &str, reason: &str| {
            let arg = arg.map_or_else(|| "DATABASE_URL".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{shown}' for '{arg}': {reason}\n"),
            )
            .with_cmd(command)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid(&value.to_string_lossy(), "not UTF-8"))?;
        database_url(text).map_err(|reason| invalid(&masked(text), &reason))
    }
}

/// `url` with the password of its user information, if any, replaced by `***`. The user
/// information ends at the last `@` before the query: a password with a `/` unescaped is
/// masked too.
fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let before_query = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let Some(at) = before_query.rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// A gRPC server's `host:port`, without a scheme: `127.0.0.1:50051`, `pdp.internal:50051`,
/// `[::1]:50051`.
fn pdp_addr(value: &str) -> Result<String, String> {
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(format!(
            "host:port without a scheme (the PDP is called in plaintext gRPC), not a {scheme} URL"
        ));
    }
    const MISSING_PORT: &str = "host:port: the port is missing (127.0.0.1:50051)";
    const BRACKETS: &str = "an IPv6 address goes in brackets: [::1]:50051";
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']').ok_or(BRACKETS)?;
            (v6, after.strip_prefix(':').ok_or(MISSING_PORT)?)
        }
        None => {
            let (host, port) = value.rsplit_once(':').ok_or(MISSING_PORT)?;
            if host.contains(':') {
                return Err(BRACKETS.into());
            }
            (host, port)
        }
    };
    if host.is_empty() {
        return Err("host:port: the host is missing".into());
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => {}
        _ => return Err(format!("the port {port:?} is not a number from 1 to 65535")),
    }
    let uri: axum::http::Uri = format!("http://{value}")
        .parse()
        .map_err(|error| format!("not a host:port ({error})"))?;
    // Nothing but the authority: no path, no query.
    if uri.authority().map(|a| a.as_str()) != Some(value) {
        return Err("host:port only, without a path".into());
    }
    Ok(value.to_owned())
}

/// Where `/metrics` is served (`METRICS_ADDR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsAddr {
    /// On the API's port, beside the API (`api`).
    Api,
    /// On a listener of its own at this address.
    Listen(SocketAddr),
}

impl FromStr for MetricsAddr {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "api" {
            return Ok(Self::Api);
        }
        value.parse().map(Self::Listen).map_err(|_| {
            "an IP address and a port (127.0.0.1:9100, 0.0.0.0:9100), or `api` to serve \
             /metrics on the API's port"
                .to_owned()
        })
    }
}

impl fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api => f.write_str("api"),
            Self::Listen(addr) => addr.fmt(f),
        }
    }
}

impl Config {
    /// The configuration from these flags alone, environment variables ignored (for
    /// tests: `Config::from_flags(["invoicing", "--port", "0"])`).
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::command().mut_args(|arg| arg.env(None));
        Self::from_arg_matches(&command.try_get_matches_from(flags)?)
    }

    /// The address of the API.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: &[&str]) -> Result<Config, clap::Error> {
        Config::from_flags(std::iter::once("invoicing").chain(flags.iter().copied()))
    }

    #[test]
    fn defaults() {
        let config = config(&[]).expect("the defaults are valid");
        assert_eq!(config.addr(), SocketAddr::from(([127, 0, 0, 1], 3000)));
        assert_eq!(config.database_url, "sqlite://data/invoicing.db");
        assert_eq!(config.max_upload_bytes, 10 * 1024 * 1024);
        assert!(config.metrics_enabled);
        assert_eq!(
            config.metrics_addr,
            MetricsAddr::Listen(SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
        assert!(config.pdp_addr.is_none());
        assert_eq!(config.pdp_timeout, Duration::from_secs(2));
        assert_eq!(config.pdp_retry_max, Duration::from_secs(30));
        assert_eq!(config.serve.header_read_timeout, Duration::from_secs(30));
        assert_eq!(config.serve.max_connections, 1024);
        assert_eq!(config.pdf_generation, PdfGeneration::BlockingPool);
        assert_eq!(config.slow_poll_threshold, Duration::from_millis(1));
        assert_eq!(config.metrics_naming, MetricsNaming::Otel);
    }

    #[test]
    fn reads_every_setting() {
        let config = config(&[
            "--bind=0.0.0.0",
            "--port=8080",
            "--database-url=sqlite:///tmp/x.db",
            "--uploads-dir=/srv/up",
            "--pdf-dir=/srv/pdf",
            "--max-upload-bytes=1024",
            "--metrics-addr=0.0.0.0:9200",
            "--metrics-enabled=off",
            "--pdp-addr=[::1]:50051",
            "--pdp-timeout=500ms",
            "--pdp-retry-max=1h",
            "--metrics-naming=promclient",
            "--header-read-timeout=2s",
            "--request-body-timeout=500ms",
            "--request-timeout=1m",
            "--max-connections=64",
            "--shutdown-timeout=5s",
        ])
        .expect("valid flags");
        assert_eq!(config.addr(), SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert_eq!(config.database_url, "sqlite:///tmp/x.db");
        assert_eq!(config.uploads_dir, PathBuf::from("/srv/up"));
        assert_eq!(config.pdf_dir, PathBuf::from("/srv/pdf"));
        assert_eq!(config.max_upload_bytes, 1024);
        assert_eq!(
            config.metrics_addr,
            MetricsAddr::Listen(SocketAddr::from(([0, 0, 0, 0], 9200)))
        );
        assert_eq!(config.pdp_addr.as_deref(), Some("[::1]:50051"));
        assert_eq!(config.pdp_timeout, Duration::from_millis(500));
        assert_eq!(config.pdp_retry_max, Duration::from_secs(3600));
        assert!(!config.metrics_enabled);
        assert_eq!(config.metrics_naming, MetricsNaming::PromClient);
        assert_eq!(
            tower_prometheus::Naming::from(config.metrics_naming),
            tower_prometheus::Naming::PromClient
        );
        let serve = config.serve;
        assert_eq!(serve.header_read_timeout, Duration::from_secs(2));
        assert_eq!(serve.request_body_timeout, Duration::from_millis(500));
        assert_eq!(serve.request_timeout, Duration::from_secs(60));
        assert_eq!(serve.max_connections, 64);
        assert_eq!(serve.shutdown_timeout, Duration::from_secs(5));
    }

    #[test]
    fn refuses_bad_values_by_name() {
        let error = config(&["--port=70000"]).expect_err("out of range");
        assert!(error.to_string().contains("'--port <PORT>'"), "{error}");
        for bad in [
            "--max-upload-bytes=0",
            "--metrics-enabled=maybe",
            "--metrics-addr=9100",
            "--bind=localhost",
            "--header-read-timeout=0s",
            "--request-timeout=soon",
            "--max-connections=0",
            "--metrics-naming=prom-client",
            "--metrics-addr=",
            "--shutdown-timeout=25h",
        ] {
            assert!(config(&[bad]).is_err(), "{bad}");
        }
        assert_eq!(
            config(&["--metrics-addr=api"]).expect("valid").metrics_addr,
            MetricsAddr::Api
        );
        for good in [
            "pdp.internal:50051",
            "127.0.0.1:1",
            "[::1]:65535",
            "localhost:50051",
        ] {
            let parsed = config(&["--pdp-addr", good]).expect(good);
            assert_eq!(parsed.pdp_addr.as_deref(), Some(good));
        }
        for good in [
            "sqlite://data/x.db",
            "sqlite:///tmp/x.db",
            "sqlite:x.db",
            "sqlite://x.db?mode=rwc",
        ] {
            let parsed = config(&["--database-url", good]).expect(good);
            assert_eq!(parsed.database_url, good);
        }
    }

    /// A refused database URL is shown with its password masked.
    #[test]
    fn a_refused_database_url_hides_its_password() {
        let error = config(&["--database-url=postgres://invoicing:s3cret@db:5432/invoicing"])
            .expect_err("not SQLite")
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(
            error.contains(
                "invalid value 'postgres://invoicing:***@db:5432/invoicing' for '--database-url <DATABASE_URL>': a postgres URL"
            ),
            "{error}"
        );
        assert_eq!(masked("sqlite://data/x.db"), "sqlite://data/x.db");
        assert_eq!(masked("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(
            masked("postgres://u:p:q@db/x?a=b@c"),
            "postgres://u:***@db/x?a=b@c"
        );
    }

    /// What each refused value is told, by setting: the reason as well as the name.
    #[test]
    fn says_why_a_value_cannot_work() {
        for (flag, value, reason) in [
            ("--pdp-timeout", "1000000000000h", "at most 1h"),
            ("--pdp-retry-max", "2h", "at most 1h"),
            ("--request-timeout", "1000000000000h", "at most 1day"),
            ("--database-url", "", "empty"),
            (
                "--database-url",
                "postgres://u:p@db/invoicing",
                "a postgres URL",
            ),
            ("--database-url", "data/invoicing.db", "not a SQLite URL"),
            ("--database-url", "sqlite://", "names no file"),
            ("--database-url", "sqlite::memory:", "in-memory"),
            ("--database-url", "sqlite://x.db?mode=memory", "in-memory"),
            (
                "--database-url",
                "sqlite://x.db?color=blue",
                "unknown query parameter",
            ),
            ("--pdp-addr", "127.0.0.1", "the port is missing"),
            ("--pdp-addr", "[::1]", "the port is missing"),
            (
                "--pdp-addr",
                "127.0.0.1:99999",
                "not a number from 1 to 65535",
            ),
            ("--pdp-addr", "127.0.0.1:0", "not a number from 1 to 65535"),
            ("--pdp-addr", "http://127.0.0.1:50160", "without a scheme"),
            ("--pdp-addr", ":50051", "the host is missing"),
            ("--pdp-addr", "::1:50051", "in brackets"),
            ("--pdp-addr", "pdp:50051/v1", "not a number"),
            ("--pdp-addr", "", "the port is missing"),
            ("--metrics-addr", "9100", "`api`"),
        ] {
            let error = config(&[&format!("{flag}={value}")])
                .expect_err(value)
                .to_string();
            assert!(error.contains(flag), "{flag}={value}: {error}");
            assert!(error.contains(reason), "{flag}={value}: {error}");
        }
    }
}
