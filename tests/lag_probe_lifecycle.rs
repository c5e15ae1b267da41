//! The lag probe's thread ends with the `Metrics` and with the runtime. Alone in its
//! binary: it counts this process's threads by name.

use std::time::{Duration, Instant};

use tower_prometheus::Metrics;

/// Threads of this process named like the probe's.
fn probe_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("Linux /proc")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-lag-probe")
        .count()
}

fn wait_for_probe_threads(n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while probe_threads() != n {
        assert!(
            Instant::now() < deadline,
            "{} probe threads, expected {n}",
            probe_threads()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_probe_stops_with_the_metrics_and_with_the_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let metrics = runtime.block_on(async { Metrics::new() });
    wait_for_probe_threads(1);
    drop(metrics);
    wait_for_probe_threads(0);

    let metrics = runtime.block_on(async { Metrics::new() });
    wait_for_probe_threads(1);
    drop(runtime);
    wait_for_probe_threads(0);
    drop(metrics);
}
