//! Atomic cells sharded per thread, on their own cache lines.
//!
//! Two threads adding to one shared atomic fight over its cache line: the floor of the
//! benches, a histogram and a gauge shared by two threads, adds 612 ns a request on two
//! threads where one per thread adds 230 ns (`benches/README.md`, "What each mechanism
//! buys"). Every hot counter of this crate (the
//! histogram buckets, the in-flight gauges) is therefore stored once per shard, each shard
//! on cache lines of its own; a thread always adds to the shard it was assigned when it
//! first recorded something, and readers add the shards up at scrape time.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Cells in one 128-byte line (two 64-byte cache lines, as the adjacent-line prefetcher
/// of current x86 CPUs pulls lines in pairs).
const CELLS_PER_LINE: usize = 16;

/// The most shards a set of cells is split into.
const MAX_SHARDS: usize = 8;

#[repr(align(128))]
#[derive(Default)]
struct Line([AtomicU64; CELLS_PER_LINE]);

/// `len` atomic `u64` cells, each stored once per shard.
pub(crate) struct ShardedCells {
    lines: Box<[Line]>,
    lines_per_shard: usize,
    shard_mask: usize,
    len: usize,
}

impl ShardedCells {
    /// `len` cells, all zero.
    pub(crate) fn new(len: usize) -> Self {
        let shards = shard_count();
        let lines_per_shard = len.div_ceil(CELLS_PER_LINE).max(1);
        let lines = (0..shards * lines_per_shard)
            .map(|_| Line::default())
            .collect();
        Self {
            lines,
            lines_per_shard,
            shard_mask: shards - 1,
            len,
        }
    }

    /// Cell `index` of the shard of the thread numbered `thread` (from [`thread_shard`]),
    /// for callers that touch several cells and look the thread up once.
    #[inline]
    pub(crate) fn at(&self, thread: usize, index: usize) -> &AtomicU64 {
        self.cell(thread & self.shard_mask, index)
    }

    #[inline]
    fn cell(&self, shard: usize, index: usize) -> &AtomicU64 {
        debug_assert!(index < self.len);
        let line = shard * self.lines_per_shard + index / CELLS_PER_LINE;
        &self.lines[line].0[index % CELLS_PER_LINE]
    }

    /// Cell `index` of every shard.
    pub(crate) fn shards(&self, index: usize) -> impl Iterator<Item = &AtomicU64> + '_ {
        (0..=self.shard_mask).map(move |shard| self.cell(shard, index))
    }

    /// The sum of cell `index` over all shards, with wrapping arithmetic (so that a
    /// gauge stored as increments and two's-complement decrements adds up right).
    pub(crate) fn sum(&self, index: usize) -> u64 {
        self.shards(index).fold(0u64, |acc, cell| {
            acc.wrapping_add(cell.load(Ordering::Relaxed))
        })
    }
}

impl std::fmt::Debug for ShardedCells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedCells")
            .field("len", &self.len)
            .field("shards", &(self.shard_mask + 1))
            .finish()
    }
}

/// Shards per set of cells: the available parallelism rounded up to a power of two,
/// at most [`MAX_SHARDS`].
pub(crate) fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_SHARDS)
            .next_power_of_two()
    })
}

/// The number of the calling thread, in the order threads first record: callers mask
/// it down to their own shard count.
#[inline]
pub(crate) fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Const-initialised: reading it is a plain load, with no lazy-init check.
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD
        .try_with(|shard| {
            let number = shard.get();
            if number != usize::MAX {
                return number;
            }
            let number = NEXT.fetch_add(1, Ordering::Relaxed) % (usize::MAX / 2);
            shard.set(number);
            number
        })
        // A thread being torn down: any shard will do.
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cells_across_threads() {
        let cells = std::sync::Arc::new(ShardedCells::new(20));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let cells = cells.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        cells.at(thread_shard(), 17).fetch_add(1, Ordering::Relaxed);
                        cells.at(thread_shard(), 3).fetch_add(2, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("the adding thread does not panic");
        }
        assert_eq!(cells.sum(17), 4000);
        assert_eq!(cells.sum(3), 8000);
        assert_eq!(cells.sum(0), 0);
    }

    #[test]
    fn wrapping_sum_gives_signed_gauges() {
        let cells = ShardedCells::new(1);
        cells.at(thread_shard(), 0).fetch_add(3, Ordering::Relaxed);
        cells
            .at(thread_shard(), 0)
            .fetch_add(-1i64 as u64, Ordering::Relaxed);
        assert_eq!(cells.sum(0) as i64, 2);
    }
}
