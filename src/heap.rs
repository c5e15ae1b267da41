//! A counting allocator for live heap bytes and allocation counts; see
//! [`CountingAllocator`].

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

const SHARDS: usize = 16;

#[repr(align(128))]
struct Shard {
    allocations: AtomicU64,
    allocated_bytes: AtomicU64,
    frees: AtomicU64,
    freed_bytes: AtomicU64,
}

impl Shard {
    const fn new() -> Self {
        Self {
            allocations: AtomicU64::new(0),
            allocated_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
        }
    }
}

static COUNTERS: [Shard; SHARDS] = [const { Shard::new() }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and without `Drop`: reading it never allocates, which matters
    // inside an allocator.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn shard() -> &'static Shard {
    let index = SHARD
        .try_with(|shard| {
            let index = shard.get();
            if index < SHARDS {
                return index;
            }
            let index = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            shard.set(index);
            index
        })
        // A thread being torn down: any shard will do.
        .unwrap_or(0);
    &COUNTERS[index]
}

#[inline]
fn count_allocation(size: usize) {
    let shard = shard();
    shard.allocations.fetch_add(1, Ordering::Relaxed);
    shard
        .allocated_bytes
        .fetch_add(size as u64, Ordering::Relaxed);
}

#[inline]
fn count_free(size: usize) {
    let shard = shard();
    shard.frees.fetch_add(1, Ordering::Relaxed);
    shard.freed_bytes.fetch_add(size as u64, Ordering::Relaxed);
}

/// A [`GlobalAlloc`] that counts what it allocates and frees, then hands the work to
/// the allocator it wraps: live heap bytes and allocation counts, for what Node's heap
/// gauges gave.
///
/// Install it as the program's global allocator around the system
/// allocator (or any other [`GlobalAlloc`]), and [`Metrics`](crate::Metrics) exposes:
///
/// | metric | type | meaning |
/// |---|---|---|
/// | `rust_heap_live_bytes` | gauge | bytes allocated and not yet freed |
/// | `rust_heap_allocated_bytes_total` | counter | bytes ever allocated |
/// | `rust_heap_allocations_total` | counter | allocations (a `realloc` counts as one allocation and one free) |
/// | `rust_heap_frees_total` | counter | frees |
///
/// When the allocator is not installed, these metrics are absent, not zero.
///
/// Counters are kept in 16 shards on separate cache lines, a thread always adding to the
/// same one, so that threads allocating in parallel do not fight over one line. Each
/// allocation and each free costs two atomic additions on the thread's shard.
///
/// ```
/// use tower_prometheus::CountingAllocator;
///
/// #[global_allocator]
/// static ALLOCATOR: CountingAllocator = CountingAllocator::system();
///
/// let metrics = tower_prometheus::Metrics::builder().runtime(false).build()?;
/// let block = vec![0u8; 1 << 20];
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, metrics.registry())?;
/// assert!(text.contains("rust_heap_live_bytes "));
/// # drop(block);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAllocator<A = System> {
    inner: A,
}

impl CountingAllocator<System> {
    /// Counts around the system allocator.
    pub const fn system() -> Self {
        Self { inner: System }
    }
}

impl<A> CountingAllocator<A> {
    /// Counts around `inner` (jemalloc, mimalloc, any [`GlobalAlloc`]).
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments unchanged, so
// `inner`'s guarantees are ours; the counting around it touches only atomics and a
// const-initialised thread-local without destructor, neither of which allocates or
// unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), passed on as is.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            count_allocation(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract, passed on as is.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count_allocation(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator (hence by
        // `inner`, which did every allocation) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        count_free(layout.size());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract (`ptr` from this allocator with
        // `layout`, valid `new_size`), passed on as is.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count_free(layout.size());
            count_allocation(new_size);
        }
        new
    }
}

/// The counters, summed over shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Totals {
    allocations: u64,
    allocated_bytes: u64,
    frees: u64,
    freed_bytes: u64,
}

fn totals() -> Totals {
    let sum = |field: fn(&Shard) -> &AtomicU64| {
        COUNTERS
            .iter()
            .map(|shard| field(shard).load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    };
    // Frees are read first: a free counted after its allocation was read cannot make
    // the live bytes negative.
    let frees = sum(|s| &s.frees);
    let freed_bytes = sum(|s| &s.freed_bytes);
    Totals {
        allocations: sum(|s| &s.allocations),
        allocated_bytes: sum(|s| &s.allocated_bytes),
        frees,
        freed_bytes,
    }
}

/// The metric families the collector can expose, with their unit suffixes.
pub(crate) const FAMILIES: &[&str] = &[
    "rust_heap_live_bytes",
    "rust_heap_allocated_bytes",
    "rust_heap_allocations",
    "rust_heap_frees",
];

/// Encodes the heap metrics when [`CountingAllocator`] is the global allocator (see its
/// docs for the metrics). [`Metrics`](crate::Metrics) registers it with the `heap`
/// feature.
#[derive(Debug, Default, Clone, Copy)]
#[non_exhaustive]
pub struct HeapCollector;

impl HeapCollector {
    /// A collector of the global counting allocator.
    pub fn new() -> Self {
        Self
    }
}

impl Collector for HeapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let totals = totals();
        // Every program allocates before `main`: nothing counted means not installed.
        if totals.allocations == 0 {
            return Ok(());
        }
        let live = totals.allocated_bytes.saturating_sub(totals.freed_bytes);
        encoder
            .encode_descriptor(
                "rust_heap_live",
                "Heap bytes allocated and not yet freed.",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?
            .encode_gauge(&(live.min(i64::MAX as u64) as i64))?;
        let counters = [
            (
                "rust_heap_allocated",
                "Heap bytes allocated since the start.",
                Some(Unit::Bytes),
                totals.allocated_bytes,
            ),
            (
                "rust_heap_allocations",
                "Heap allocations since the start.",
                None,
                totals.allocations,
            ),
            (
                "rust_heap_frees",
                "Heap frees since the start.",
                None,
                totals.frees,
            ),
        ];
        for (name, help, unit, value) in counters {
            encoder
                .encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }
}
