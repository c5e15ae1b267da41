//! Configuration: each setting is a flag and an environment variable (the flag wins), read
//! by `clap`; `invoicing --help` lists them with their defaults. See the table in
//! `README.md`.
//!
//! A value the service cannot use stops it at start-up with `clap`'s message, which
//! names the setting (`invalid value '70000' for '--port <PORT>'`); an empty variable is
//! such a value.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
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
    /// SQLite database; the file and its folder are created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/invoicing.db"
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
    /// A separate listener for `/metrics` (`127.0.0.1:9100`); unset: on the API port.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
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
    /// The PDP issued invoices are submitted to, `host:port` (gRPC, plaintext); unset:
    /// invoices are not submitted.
    #[arg(long, env = "PDP_ADDR")]
    pub pdp_addr: Option<String>,
    /// Deadline of a submission to the PDP (sent as `grpc-timeout`).
    #[arg(long, env = "PDP_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub pdp_timeout: Duration,
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
    /// Connections served at once; more wait in the listen backlog. Lowered at start-up
    /// to what the open-files limit (`ulimit -n`) allows.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Time the requests in flight have to finish on SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

/// A positive duration in `humantime`'s syntax.
fn duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if duration.is_zero() => Err("must be more than 0".into()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
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
        assert!(config.metrics_addr.is_none());
        assert!(config.pdp_addr.is_none());
        assert_eq!(config.pdp_timeout, Duration::from_secs(2));
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
            "--metrics-addr=127.0.0.1:9100",
            "--metrics-enabled=off",
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
            Some(SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
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
        ] {
            assert!(config(&[bad]).is_err(), "{bad}");
        }
    }
}
