//! The `metrics` facade allocates nothing once a series exists: `counter!` with static
//! labels, `gauge!` and `histogram!`, and handles kept by the caller, counted with an
//! allocator that counts the allocations of the calling thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use metrics::{counter, gauge, histogram};
use prometheus_client::registry::Registry;
use tower_prometheus::MetricsRecorder;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as it is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// The allocations of 1,000 calls of `record`, after one that creates the series.
fn allocations_of_1000(recorder: &MetricsRecorder, record: impl Fn()) -> u64 {
    metrics::with_local_recorder(recorder, || {
        record();
        let before = allocations();
        for _ in 0..1_000 {
            record();
        }
        allocations() - before
    })
}

#[test]
fn no_allocation_once_the_series_exists() {
    let mut registry = Registry::default();
    let recorder = MetricsRecorder::builder()
        .build(&mut registry)
        .expect("valid options");
    // Many series, so that the lookups go through a grown table.
    metrics::with_local_recorder(&recorder, || {
        for i in 0..500 {
            counter!("filler", "i" => i.to_string()).increment(1);
        }
    });
    assert_eq!(
        allocations_of_1000(&recorder, || counter!("orders", "kind" => "new")
            .increment(1)),
        0,
        "counter! with static labels"
    );
    assert_eq!(
        allocations_of_1000(&recorder, || counter!("orders.unlabelled").increment(1)),
        0,
        "counter! without labels"
    );
    assert_eq!(
        allocations_of_1000(&recorder, || {
            let queue = gauge!("queue", "name" => "jobs");
            queue.increment(2.0);
            queue.decrement(1.0);
            gauge!("workers").set(4.0);
        }),
        0,
        "gauge!"
    );
    assert_eq!(
        allocations_of_1000(&recorder, || {
            histogram!("latency", "route" => "/invoices").record(0.02)
        }),
        0,
        "histogram!"
    );
    let kept = metrics::with_local_recorder(&recorder, || counter!("kept", "a" => "b"));
    assert_eq!(
        allocations_of_1000(&recorder, || kept.increment(1)),
        0,
        "a handle kept"
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(
        text.contains("\norders_total{kind=\"new\"} 1001\n"),
        "{text}"
    );
    assert!(text.contains("\nkept_total{a=\"b\"} 1001\n"), "{text}");
    assert!(text.contains("\nqueue{name=\"jobs\"} 1001.0\n"), "{text}");
    assert!(
        text.contains("\nlatency_count{route=\"/invoices\"} 1001\n"),
        "{text}"
    );
}
