//! The counting allocator, installed as this test binary's global allocator.
#![cfg(feature = "heap")]

mod common;

use common::{parse, prometheus_text, promtool_check_metrics, value};
use tower_prometheus::{CountingAllocator, Metrics};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::system();

fn read(metrics: &Metrics, name: &str) -> f64 {
    value(&parse(&prometheus_text(metrics.registry())), name, &[])
        .unwrap_or_else(|| panic!("{name} is published"))
}

/// One test, so that no other test of this binary allocates in parallel.
#[test]
fn live_bytes_follow_allocations_and_frees() {
    let metrics = Metrics::builder()
        .runtime(false)
        .process(false)
        .build()
        .expect("valid options");
    promtool_check_metrics(&prometheus_text(metrics.registry()));
    let ten_mib = f64::from(10u32 << 20);

    let live = read(&metrics, "rust_heap_live_bytes");
    let allocations = read(&metrics, "rust_heap_allocations_total");
    let allocated = read(&metrics, "rust_heap_allocated_bytes_total");
    let block = vec![7u8; 10 << 20];
    std::hint::black_box(&block);
    let held = read(&metrics, "rust_heap_live_bytes");
    assert!(
        held >= live + ten_mib,
        "live {live} -> {held} while holding 10 MiB"
    );
    assert!(read(&metrics, "rust_heap_allocations_total") > allocations);
    assert!(read(&metrics, "rust_heap_allocated_bytes_total") >= allocated + ten_mib);

    let frees = read(&metrics, "rust_heap_frees_total");
    drop(block);
    let freed = read(&metrics, "rust_heap_live_bytes");
    assert!(
        freed <= held - ten_mib,
        "live {held} -> {freed} after freeing 10 MiB"
    );
    assert!(read(&metrics, "rust_heap_frees_total") > frees);

    // A realloc moves the count from the old size to the new one.
    let mut growing: Vec<u8> = Vec::with_capacity(1 << 20);
    growing.extend(std::iter::repeat_n(1u8, 1 << 20));
    let before = read(&metrics, "rust_heap_live_bytes");
    growing.reserve_exact(9 << 20);
    let after = read(&metrics, "rust_heap_live_bytes");
    assert!(
        after >= before + f64::from(9u32 << 20),
        "realloc {before} -> {after}"
    );
    drop(growing);

    // Two threads allocating at once are all counted.
    let allocations = read(&metrics, "rust_heap_allocations_total");
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..10_000 {
                    std::hint::black_box(vec![0u8; 64]);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no panic");
    }
    let counted = read(&metrics, "rust_heap_allocations_total") - allocations;
    assert!(counted >= 20_000.0, "{counted}");
}
