//! The event-loop lag probe.
//!
//! A ticker thread stamps the time every `resolution` and sends the stamp to a probe
//! task on the runtime; the task records how long each stamp waited before the task was
//! polled: the time a ready task waits for the runtime. The ticker runs outside the
//! runtime, so a stall that swallows k periods leaves k stamps waiting, and each is
//! recorded with its own wait when the runtime comes back: k samples, the oldest as long
//! as the stall (no coordinated omission). Up to [`QUEUED_STAMPS`] stamps wait; a longer
//! stall records that many.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::histogram::HistogramCore;

/// Stamps that can wait for a stalled runtime: 1,024 periods (10 s at 10 ms).
pub(crate) const QUEUED_STAMPS: usize = 1024;

/// Stops the ticker thread when dropped; the probe task then ends with its channel.
#[derive(Debug)]
pub(crate) struct Probe {
    stop: Arc<AtomicBool>,
}

impl Probe {
    /// Starts the ticker thread and the probe task on `handle`. `None` if the thread
    /// cannot be spawned (the lag histogram then stays empty).
    pub(crate) fn start(
        handle: &Handle,
        histogram: Arc<HistogramCore>,
        resolution: Duration,
    ) -> Option<Self> {
        let (stamps, mut waiting) = mpsc::channel::<Instant>(QUEUED_STAMPS);
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("tokio-lag-probe".into())
            .stack_size(64 * 1024)
            .spawn(move || tick(&stamps, &ticker_stop, resolution))
            .ok()?;
        handle.spawn(async move {
            while let Some(stamp) = waiting.recv().await {
                histogram.observe(stamp.elapsed().as_secs_f64());
            }
        });
        Some(Self { stop })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends a stamp every `resolution` until stopped or until the probe task is gone (the
/// runtime shut down).
fn tick(stamps: &mpsc::Sender<Instant>, stop: &AtomicBool, resolution: Duration) {
    let mut next = Instant::now() + resolution;
    loop {
        let now = Instant::now();
        if let Some(wait) = next.checked_duration_since(now) {
            std::thread::sleep(wait);
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        match stamps.try_send(now) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Closed(_)) => return,
        }
        // A ticker that fell behind (the machine was busy) skips ahead rather than
        // sending a burst of stamps that all waited for the ticker, not the runtime.
        next = (next + resolution).max(now);
    }
}
