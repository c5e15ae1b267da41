//! The Tokio runtime collector and its event-loop lag probe.

mod common;

use std::time::{Duration, Instant};

use common::{Sample, parse, prometheus_text, promtool_check_metrics, value};
use prometheus_client::registry::Registry;
use tower_prometheus::{Error, Metrics, RuntimeCollector};

const LAG: &str = "tokio_event_loop_lag_seconds";

fn scrape(registry: &Registry) -> Vec<Sample> {
    parse(&prometheus_text(registry))
}

fn lag_count(samples: &[Sample]) -> f64 {
    value(samples, &format!("{LAG}_count"), &[]).expect("the lag histogram is published")
}

fn lag_bucket(samples: &[Sample], le: &str) -> f64 {
    value(samples, &format!("{LAG}_bucket"), &[("le", le)]).expect("the bucket exists")
}

/// Waits (at most 5 s) until the probe has recorded `n` samples more than `from`.
async fn samples_after(registry: &Registry, from: f64, n: f64) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let samples = scrape(registry);
        if lag_count(&samples) >= from + n {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "the probe recorded nothing for 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn registry_with(collector: RuntimeCollector) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    registry
}

/// A current-thread runtime blocked for 200 ms: the stall is seen by ~20 samples (one
/// per 10 ms period it swallowed), not by one, and the oldest waited ≥ 100 ms.
#[tokio::test(flavor = "current_thread")]
async fn a_stall_is_recorded_once_per_period_it_swallowed() {
    let registry = registry_with(RuntimeCollector::new().expect("inside a runtime"));
    let samples = samples_after(&registry, 0.0, 3.0).await;
    let (count, slow) = (
        lag_count(&samples),
        lag_count(&samples) - lag_bucket(&samples, "0.1"),
    );

    std::thread::sleep(Duration::from_millis(200)); // blocks the only worker
    tokio::task::yield_now().await;
    let samples = samples_after(&registry, count, 10.0).await;
    let added = lag_count(&samples) - count;
    let slow_added = lag_count(&samples) - lag_bucket(&samples, "0.1") - slow;
    assert!(
        slow_added >= 1.0,
        "one sample waited at least 100 ms: {samples:#?}"
    );
    assert!(
        (10.0..=100.0).contains(&added),
        "about 200 ms / 10 ms samples, not 1: got {added}"
    );
    eprintln!("a 200 ms stall added {added} samples, {slow_added} of them over 100 ms");
}

#[tokio::test(flavor = "current_thread")]
async fn an_idle_runtime_has_small_lags() {
    let registry = registry_with(RuntimeCollector::new().expect("inside a runtime"));
    let samples = samples_after(&registry, 0.0, 20.0).await;
    let count = lag_count(&samples);
    assert_eq!(
        lag_bucket(&samples, "0.1"),
        count,
        "no idle sample waited 100 ms"
    );
    assert!(
        lag_bucket(&samples, "0.01") >= 0.8 * count,
        "most idle samples are in the lowest buckets: {samples:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_gauges_and_counters_move() {
    let registry = registry_with(RuntimeCollector::new().expect("inside a runtime"));
    let samples = scrape(&registry);
    assert_eq!(value(&samples, "tokio_workers", &[]), Some(2.0));
    let alive = value(&samples, "tokio_alive_tasks", &[]).expect("published");
    let busy = value(&samples, "tokio_worker_busy_seconds_total", &[]).expect("published");

    // 50 tasks parked on a signal are alive. (A watch channel, not `Notify`: a task
    // not yet polled when the signal is sent still sees it.)
    let (release, released) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut released = released.clone();
            tokio::spawn(async move {
                let _ = released.wait_for(|released| *released).await;
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let parked = value(&scrape(&registry), "tokio_alive_tasks", &[]).expect("published");
    assert!(parked >= alive + 50.0, "alive tasks {alive} -> {parked}");
    release.send_replace(true);
    for task in tasks {
        task.await.expect("the task ends");
    }
    // Some work for the workers, then their busy time has grown.
    let work: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async {
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(20) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    for task in work {
        task.await.expect("the task ends");
    }
    // Workers publish their busy time when they park or tick, not at each poll: wait
    // (at most 5 s) until it shows.
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let samples = scrape(&registry);
        let now = value(&samples, "tokio_worker_busy_seconds_total", &[]).expect("published");
        if now > busy {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "busy time never grew from {busy}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let done = value(&samples, "tokio_alive_tasks", &[]).expect("published");
    assert!(done < parked, "finished tasks are no longer alive");
    assert!(value(&samples, "tokio_worker_parks_total", &[]).expect("published") >= 1.0);
    // Remote wake-ups (the probe's, among others) pass through the global queue: its
    // depth at any instant is small but not always zero.
    let depth = value(&samples, "tokio_global_queue_depth", &[]).expect("published");
    assert!((0.0..100.0).contains(&depth), "{depth}");
}

#[test]
fn outside_a_runtime_it_is_an_error_not_a_panic() {
    assert_eq!(RuntimeCollector::new().err(), Some(Error::NoRuntime));
    assert_eq!(
        RuntimeCollector::with_lag_resolution(Duration::ZERO).err(),
        Some(Error::InvalidLagResolution)
    );
}

/// `Metrics::new()` outside a runtime does not fail: the collector attaches to the
/// runtime of the first scrape.
#[test]
fn metrics_built_outside_a_runtime_attach_at_the_first_scrape() {
    let metrics = Metrics::new();
    let text = prometheus_text(metrics.registry());
    assert!(!text.contains("tokio_workers"), "no runtime to read yet");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .expect("a runtime");
    let samples = runtime.block_on(async {
        scrape(metrics.registry());
        samples_after(metrics.registry(), 0.0, 1.0).await
    });
    assert_eq!(value(&samples, "tokio_workers", &[]), Some(3.0));
}

/// The whole default exposition, collectors included, passes promtool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_exposition_passes_promtool() {
    let metrics = Metrics::new();
    samples_after(metrics.registry(), 0.0, 2.0).await;
    let text = prometheus_text(metrics.registry());
    promtool_check_metrics(&text);
    for name in ["process_cpu_seconds_total", "tokio_alive_tasks", LAG] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} in {text}"
        );
    }
    common::python_openmetrics_check(&common::openmetrics_text(metrics.registry()));
}

#[cfg(tokio_unstable)]
#[test]
fn unstable_metrics_with_tokio_unstable() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .enable_metrics_poll_time_histogram()
        .build()
        .expect("a runtime");
    let samples = runtime.block_on(async {
        let registry = registry_with(RuntimeCollector::new().expect("inside a runtime"));
        tokio::task::spawn_blocking(|| ())
            .await
            .expect("the blocking task ends");
        for _ in 0..10 {
            tokio::spawn(async {}).await.expect("the task ends");
        }
        // Workers publish their poll counts when they park or tick, not at each poll:
        // wait (at most 5 s) until the 10 polls show.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let samples = scrape(&registry);
            let polls = value(&samples, "tokio_task_poll_time_seconds_count", &[]);
            if polls.is_some_and(|polls| polls >= 10.0) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "polls never published: {polls:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(value(&samples, "tokio_blocking_threads", &[]).expect("published") >= 1.0);
    assert!(value(&samples, "tokio_spawned_tasks_total", &[]).expect("published") >= 10.0);
    assert!(value(&samples, "tokio_blocking_queue_depth", &[]).is_some());
    assert!(value(&samples, "tokio_idle_blocking_threads", &[]).is_some());
    assert!(value(&samples, "tokio_task_poll_time_seconds_count", &[]).expect("published") >= 10.0);
    assert!(
        !common::find(
            &samples,
            "tokio_task_poll_time_seconds_bucket",
            &[("le", "+Inf")]
        )
        .is_empty()
    );
}
