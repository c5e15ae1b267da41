//! Alloc/free pairs through the counting allocator against the system allocator alone,
//! on one thread and on two threads at once.
//!
//! `cargo bench --bench heap --features heap`

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tower_prometheus::CountingAllocator;

static COUNTING: CountingAllocator = CountingAllocator::system();

/// `iters` alloc/free pairs of `layout` through `allocator`.
fn pairs(allocator: &dyn GlobalAlloc, layout: Layout, iters: u64) {
    for _ in 0..iters {
        // SAFETY: `layout` has a non-zero size; the pointer is freed once, with the
        // layout it was allocated with, by the allocator that allocated it.
        unsafe {
            let ptr = allocator.alloc(layout);
            assert!(!ptr.is_null());
            black_box(ptr);
            allocator.dealloc(ptr, layout);
        }
    }
}

/// Wall time of `iters` pairs on each of two threads running at once.
fn two_threads(
    allocator: &'static (dyn GlobalAlloc + Sync),
    layout: Layout,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(move || pairs(allocator, layout, iters));
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let allocators: [(&str, &'static (dyn GlobalAlloc + Sync)); 2] =
        [("system", &System), ("counting", &COUNTING)];
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("alloc_free_pair/{threads}_thread"));
        for size in [16usize, 1024, 64 * 1024] {
            let layout = Layout::from_size_align(size, 8).expect("valid layout");
            for (name, allocator) in allocators {
                group.bench_with_input(BenchmarkId::new(name, size), &layout, |b, layout| {
                    if threads == 1 {
                        b.iter(|| pairs(allocator, *layout, 1));
                    } else {
                        b.iter_custom(|iters| two_threads(allocator, *layout, iters));
                    }
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
