//! The counters of each listener and the names they are published under.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use super::accept::Endpoint;
use super::errors::{AcceptError, Handshake};
use crate::histogram::{Buckets, HistogramCore};
use crate::http_metrics::Naming;

/// The most listeners with series of their own; those beyond share one series labelled
/// `otel_metric_overflow="true"`.
pub(crate) const MAX_LISTENERS: usize = 64;

/// Bounds of the connection duration buckets, in seconds: the advisory bounds of the
/// OpenTelemetry conventions for `kestrel.connection.duration`, from 10 ms (a
/// connection turned away by the application at once) to 5 minutes (keep-alive
/// connections, HTTP/2 clients).
pub(crate) const DURATION_BOUNDS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The names a [`Naming`] gives the connection metrics, without the unit suffixes and
/// `_total` (the encoder adds them).
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) open: &'static str,
    pub(crate) duration: &'static str,
    pub(crate) rejected: &'static str,
    pub(crate) accept_errors: &'static str,
    pub(crate) limit: &'static str,
    pub(crate) handshake: &'static str,
    /// `network_transport` and `network_type` are added.
    pub(crate) otel_labels: bool,
}

pub(crate) fn names(naming: Naming) -> &'static Names {
    match naming {
        // axum-prometheus has no connection metrics: its users get the default names.
        Naming::OpenTelemetry | Naming::AxumPrometheus => &Names {
            open: "http_server_open_connections",
            duration: "http_server_connection_duration",
            rejected: "http_server_rejected_connections",
            accept_errors: "http_server_accept_errors",
            limit: "http_server_connection_limit",
            handshake: "http_server_tls_handshake_duration",
            otel_labels: true,
        },
        Naming::PromClient => &Names {
            open: "http_open_connections",
            duration: "http_connection_duration",
            rejected: "http_rejected_connections",
            accept_errors: "http_accept_errors",
            limit: "http_connection_limit",
            handshake: "http_tls_handshake_duration",
            otel_labels: false,
        },
    }
}

/// The families of a naming, as a scrape names them (`_total` left out), for the
/// names [`Metrics::register`](crate::Metrics::register) refuses.
pub(crate) fn families(naming: Naming) -> [String; 6] {
    let names = names(naming);
    [
        names.open.to_owned(),
        format!("{}_seconds", names.duration),
        names.rejected.to_owned(),
        names.accept_errors.to_owned(),
        names.limit.to_owned(),
        format!("{}_seconds", names.handshake),
    ]
}

/// The counters of one listener (of every listener on one endpoint, or of every listener
/// beyond [`MAX_LISTENERS`]).
pub(crate) struct Series {
    pub(crate) endpoint: Endpoint,
    pub(crate) overflow: bool,
    /// Connections accepted and not yet closed: exact, for the cap.
    pub(crate) open: AtomicUsize,
    pub(crate) duration: HistogramCore,
    pub(crate) rejected: AtomicU64,
    /// The cap of the listener, 0 for none.
    pub(crate) limit: AtomicUsize,
    pub(crate) accept_errors: [AtomicU64; AcceptError::COUNT],
    /// Whether an accept error of each kind has been logged.
    pub(crate) logged: [AtomicBool; AcceptError::COUNT],
    /// One histogram per [`Handshake`] outcome, made by the first handshake measured.
    pub(crate) handshakes: OnceLock<Box<[HistogramCore]>>,
}

impl Series {
    fn new(endpoint: Endpoint, overflow: bool) -> Self {
        Self {
            endpoint,
            overflow,
            open: AtomicUsize::new(0),
            duration: HistogramCore::new(
                Buckets::new(DURATION_BOUNDS).expect("the bounds are finite and increasing"),
            ),
            rejected: AtomicU64::new(0),
            limit: AtomicUsize::new(0),
            accept_errors: Default::default(),
            logged: Default::default(),
            handshakes: OnceLock::new(),
        }
    }

    /// Records a connection closed after `seconds`.
    #[inline]
    pub(crate) fn closed(&self, seconds: f64) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.duration.observe(seconds);
    }

    /// Records a handshake of `seconds` that ended so.
    pub(crate) fn handshake(&self, outcome: Handshake, seconds: f64) {
        let histograms = self.handshakes.get_or_init(|| {
            Handshake::ALL
                .iter()
                .map(|_| HistogramCore::new(Buckets::duration_seconds()))
                .collect()
        });
        if let Some(histogram) = histograms.get(outcome.index()) {
            histogram.observe(seconds);
        }
    }

    /// Counts an accept error; `true` the first time one of its kind is seen.
    pub(crate) fn accept_error(&self, kind: AcceptError) -> bool {
        self.accept_errors[kind.index()].fetch_add(1, Ordering::Relaxed);
        !self.logged[kind.index()].swap(true, Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("endpoint", &self.endpoint)
            .field("overflow", &self.overflow)
            .field("open", &self.open.load(Ordering::Relaxed))
            .field("rejected", &self.rejected.load(Ordering::Relaxed))
            .field("limit", &self.limit.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Every listener's series, in the order the listeners were wrapped.
#[derive(Debug)]
pub(crate) struct Listeners {
    pub(crate) names: &'static Names,
    series: RwLock<Vec<Arc<Series>>>,
    overflow: OnceLock<Arc<Series>>,
}

impl Listeners {
    pub(crate) fn new(naming: Naming) -> Self {
        Self {
            names: names(naming),
            series: RwLock::new(Vec::new()),
            overflow: OnceLock::new(),
        }
    }

    /// The series of a listener at `endpoint`: that of an earlier listener at the same
    /// endpoint (two series with one label set would make Prometheus refuse the scrape),
    /// a new one, or past [`MAX_LISTENERS`] the overflow series.
    pub(crate) fn series(&self, endpoint: Endpoint) -> Arc<Series> {
        // Only pushes happen under the lock: a poisoned one still holds whole entries.
        let mut all = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = all.iter().find(|series| series.endpoint == endpoint) {
            return series.clone();
        }
        if all.len() >= MAX_LISTENERS {
            return self
                .overflow
                .get_or_init(|| Arc::new(Series::new(Endpoint::default(), true)))
                .clone();
        }
        let series = Arc::new(Series::new(endpoint, false));
        all.push(series.clone());
        series
    }

    /// Every series, the overflow one last.
    pub(crate) fn all(&self) -> Vec<Arc<Series>> {
        let mut all = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        all.extend(self.overflow.get().cloned());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axum_prometheus_preset_keeps_the_default_connection_names() {
        assert!(names(Naming::AxumPrometheus).otel_labels);
        assert_eq!(
            families(Naming::AxumPrometheus),
            families(Naming::OpenTelemetry)
        );
    }
}
