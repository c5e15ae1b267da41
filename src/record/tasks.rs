//! The inner future, instrumented with a task monitor of `tokio-metrics` when its family
//! has one (feature `task-metrics`; the HTTP layer's per-route monitors,
//! `http_metrics/tasks.rs`).
//!
//! Without the feature, [`Monitored`] is the inner future itself and a [`Monitor`]
//! cannot exist: the default path is unchanged.

#[cfg(feature = "task-metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "task-metrics"))]
pub(crate) use off::*;

#[cfg(not(feature = "task-metrics"))]
mod off {
    /// The inner future, as the engine holds it: itself, without the feature.
    pub(crate) type Monitored<F> = F;

    /// The inner future of a call that is not instrumented.
    #[inline(always)]
    pub(crate) fn plain<F>(future: F) -> Monitored<F> {
        future
    }

    /// A task monitor: there is none without the feature.
    pub(crate) type Monitor = std::convert::Infallible;

    /// The inner future, instrumented with `monitor` (which cannot exist).
    #[inline(always)]
    pub(crate) fn instrument<F>(_future: F, monitor: Monitor) -> Monitored<F> {
        match monitor {}
    }
}

#[cfg(feature = "task-metrics")]
mod on {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use pin_project_lite::pin_project;
    use tokio_metrics::{Instrumented, TaskMonitorCore};

    /// A task monitor, shared by the calls in flight it instruments (as tokio-metrics'
    /// `TaskMonitor` is, without naming its builder, which tokio-metrics does not
    /// export).
    pub(crate) type Monitor = Arc<TaskMonitorCore>;

    pin_project! {
        /// The inner future, instrumented or not.
        #[project = MonitoredProj]
        pub(crate) enum Monitored<F> {
            Plain { #[pin] future: F },
            Instrumented { #[pin] future: Instrumented<F, Monitor> },
        }
    }

    impl<F: Future> Future for Monitored<F> {
        type Output = F::Output;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            match self.project() {
                MonitoredProj::Plain { future } => future.poll(cx),
                MonitoredProj::Instrumented { future } => future.poll(cx),
            }
        }
    }

    /// The inner future of a call that is not instrumented.
    #[inline(always)]
    pub(crate) fn plain<F>(future: F) -> Monitored<F> {
        Monitored::Plain { future }
    }

    /// The inner future, instrumented with `monitor`. The caller builds the response
    /// future around it in place (`ResponseFuture::recorded`): an `instrument(shared,
    /// route, future)` returning either variant moved the inner future once more, 61
    /// instructions per request on the axum path.
    #[inline(always)]
    pub(crate) fn instrument<F>(future: F, monitor: Monitor) -> Monitored<F> {
        Monitored::Instrumented {
            future: TaskMonitorCore::instrument_with(future, monitor),
        }
    }
}
