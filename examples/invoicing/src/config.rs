//! Configuration from environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PORT` | `3000` | port of the API (`0` picks a free one) |
//! | `BIND` | `127.0.0.1` | address of the API (`0.0.0.0` in a container) |
//! | `DATABASE_URL` | `sqlite://data/invoicing.db` | SQLite database, created on first start |
//! | `UPLOADS_DIR` | `data/uploads` | where attachments are stored, served under `/uploads/` |
//! | `PDF_DIR` | `data/pdf-a3` | PDF/A-3 invoices, served under `/pdf-a3/` |
//! | `MAX_UPLOAD_BYTES` | `10485760` (10 MiB) | largest attachment accepted |
//! | `METRICS_ADDR` | unset | unset: `/metrics` on the API port; set (`127.0.0.1:9100`): only there |
//! | `METRICS_ENABLED` | `true` | `false`: no HTTP metrics layer and no `/metrics` at all |
//! | `RUST_LOG` | `info` | log filter (`tracing_subscriber::EnvFilter` syntax) |

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// The default of `MAX_UPLOAD_BYTES`: 10 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;

/// What the service needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// `BIND`.
    pub bind: IpAddr,
    /// `PORT`.
    pub port: u16,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `UPLOADS_DIR`.
    pub uploads_dir: PathBuf,
    /// `PDF_DIR`.
    pub pdf_dir: PathBuf,
    /// `MAX_UPLOAD_BYTES`.
    pub max_upload_bytes: u64,
    /// `METRICS_ADDR`.
    pub metrics_addr: Option<SocketAddr>,
    /// `METRICS_ENABLED`.
    pub metrics_enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 3000,
            database_url: "sqlite://data/invoicing.db".into(),
            uploads_dir: "data/uploads".into(),
            pdf_dir: "data/pdf-a3".into(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            metrics_addr: None,
            metrics_enabled: true,
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var`; unset or empty variables take their default.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let mut config = Self::default();
        if let Some(value) = var("BIND") {
            config.bind = parse("BIND", &value)?;
        }
        if let Some(value) = var("PORT") {
            config.port = parse("PORT", &value)?;
        }
        if let Some(value) = var("DATABASE_URL") {
            config.database_url = value;
        }
        if let Some(value) = var("UPLOADS_DIR") {
            config.uploads_dir = value.into();
        }
        if let Some(value) = var("PDF_DIR") {
            config.pdf_dir = value.into();
        }
        if let Some(value) = var("MAX_UPLOAD_BYTES") {
            config.max_upload_bytes = parse("MAX_UPLOAD_BYTES", &value)?;
            if config.max_upload_bytes == 0 {
                return Err(ConfigError::new(
                    "MAX_UPLOAD_BYTES",
                    &value,
                    "must be at least 1",
                ));
            }
        }
        if let Some(value) = var("METRICS_ADDR") {
            config.metrics_addr = Some(parse("METRICS_ADDR", &value)?);
        }
        if let Some(value) = var("METRICS_ENABLED") {
            config.metrics_enabled = match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::new(
                        "METRICS_ENABLED",
                        &value,
                        "expected true or false",
                    ));
                }
            };
        }
        Ok(config)
    }

    /// The address of the API.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

fn parse<T>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|error: T::Err| ConfigError::new(name, value, &error.to_string()))
}

/// An environment variable with a value the service cannot use.
#[derive(Debug)]
pub struct ConfigError {
    variable: &'static str,
    value: String,
    reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, value: &str, reason: &str) -> Self {
        Self {
            variable,
            value: value.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.variable, self.value, self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(config.addr(), "127.0.0.1:3000".parse().unwrap());
        assert_eq!(config.database_url, "sqlite://data/invoicing.db");
        assert_eq!(config.max_upload_bytes, 10 * 1024 * 1024);
        assert!(config.metrics_enabled);
        assert!(config.metrics_addr.is_none());
    }

    #[test]
    fn reads_every_variable() {
        let config = config(&[
            ("BIND", "0.0.0.0"),
            ("PORT", "8080"),
            ("DATABASE_URL", "sqlite:///tmp/x.db"),
            ("UPLOADS_DIR", "/srv/up"),
            ("PDF_DIR", "/srv/pdf"),
            ("MAX_UPLOAD_BYTES", "1024"),
            ("METRICS_ADDR", "127.0.0.1:9100"),
            ("METRICS_ENABLED", "false"),
        ])
        .unwrap();
        assert_eq!(config.addr(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.database_url, "sqlite:///tmp/x.db");
        assert_eq!(config.uploads_dir, PathBuf::from("/srv/up"));
        assert_eq!(config.pdf_dir, PathBuf::from("/srv/pdf"));
        assert_eq!(config.max_upload_bytes, 1024);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert!(!config.metrics_enabled);
    }

    #[test]
    fn refuses_bad_values_by_name() {
        let error = config(&[("PORT", "70000")]).unwrap_err();
        assert!(error.to_string().starts_with("PORT=\"70000\""), "{error}");
        assert!(config(&[("MAX_UPLOAD_BYTES", "0")]).is_err());
        assert!(config(&[("METRICS_ENABLED", "maybe")]).is_err());
        assert!(config(&[("METRICS_ADDR", "9100")]).is_err());
        assert!(config(&[("BIND", "localhost")]).is_err());
    }
}
