//! The process collector reads plausible, moving values. One test, so that nothing else
//! in this process opens files or allocates in parallel.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{parse, prometheus_text, promtool_check_metrics, value};
use prometheus_client::registry::Registry;
use tower_prometheus::ProcessCollector;

fn scrape(registry: &Registry) -> Vec<common::Sample> {
    parse(&prometheus_text(registry))
}

fn read(registry: &Registry, name: &str) -> f64 {
    value(&scrape(registry), name, &[]).unwrap_or_else(|| panic!("{name} is published"))
}

#[test]
fn process_metrics_follow_the_process() {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector::new()));
    let text = prometheus_text(&registry);
    promtool_check_metrics(&text);

    // CPU time grows with a busy loop (bounded: 10 s of wall time at most).
    let cpu = read(&registry, "process_cpu_seconds_total");
    let user = read(&registry, "process_cpu_user_seconds_total");
    let started = Instant::now();
    let mut spin = 0u64;
    while read(&registry, "process_cpu_seconds_total") < cpu + 0.05 {
        for i in 0..1_000_000u64 {
            spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(i));
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "CPU time never grew"
        );
    }
    assert!(read(&registry, "process_cpu_user_seconds_total") > user);
    let samples = scrape(&registry);
    let total = value(&samples, "process_cpu_seconds_total", &[]).expect("published");
    let sum = value(&samples, "process_cpu_user_seconds_total", &[]).expect("published")
        + value(&samples, "process_cpu_system_seconds_total", &[]).expect("published");
    assert!((total - sum).abs() < 1e-9, "total is user + system");
    assert!(
        total.fract() != 0.0 || total == 0.0 || total > 1.0,
        "not truncated"
    );

    // Resident memory grows when 64 MiB are touched.
    let rss = read(&registry, "process_resident_memory_bytes");
    let block = vec![1u8; 64 << 20];
    std::hint::black_box(&block);
    let grown = read(&registry, "process_resident_memory_bytes");
    assert!(
        grown >= rss + f64::from(32u32 << 20),
        "RSS {rss} -> {grown}"
    );
    assert!(read(&registry, "process_virtual_memory_bytes") >= grown);
    drop(block);

    // Open file descriptors grow with open files.
    let fds = read(&registry, "process_open_fds");
    let files: Vec<_> = (0..10)
        .map(|_| std::fs::File::open("/proc/self/stat").expect("readable"))
        .collect();
    assert_eq!(read(&registry, "process_open_fds"), fds + 10.0);
    drop(files);
    assert_eq!(read(&registry, "process_open_fds"), fds);
    assert!(read(&registry, "process_max_fds") >= fds);

    // Threads grow with threads.
    let threads = read(&registry, "process_threads");
    let (release, parked) = std::sync::mpsc::channel::<()>();
    let parked = std::sync::Arc::new(std::sync::Mutex::new(parked));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let parked = parked.clone();
            std::thread::spawn(move || {
                let _ = parked.lock().map(|receiver| receiver.recv());
            })
        })
        .collect();
    assert_eq!(read(&registry, "process_threads"), threads + 3.0);
    drop(release);
    for handle in handles {
        handle.join().expect("the parked thread ends");
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let start = read(&registry, "process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start > now - 3600.0,
        "started {start}, now {now}"
    );
}

/// Without the counting allocator installed, the heap metrics are absent, not zero.
#[cfg(feature = "heap")]
#[test]
fn heap_metrics_are_absent_without_the_counting_allocator() {
    let metrics = tower_prometheus::Metrics::builder()
        .runtime(false)
        .build()
        .expect("valid options");
    let text = prometheus_text(metrics.registry());
    assert!(!text.contains("rust_heap"), "{text}");
    assert!(text.contains("process_open_fds"));
}
