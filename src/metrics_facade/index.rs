//! The lock-free index from a `metrics::Key` to its series: what `counter!(..)` reads on
//! every call.
//!
//! A hash table of chained buckets whose links are [`OnceLock`]s: a reader follows them
//! with one acquire load each and never waits; a writer (one at a time, behind the
//! index's mutex, only when a key is seen for the first time) appends to a chain and
//! never changes a link once set. Keys carry their hash, computed once by `metrics` (at
//! compile time for static keys), so a lookup hashes nothing.
//!
//! The table grows by doubling: the larger table is filled with every entry, then
//! published; the smaller ones are kept until the index is dropped (readers may still
//! be in them), which bounds the memory of all tables to twice that of the last one.
//! A reader in an older table misses the keys added since, and takes the slow path,
//! which looks again under the mutex.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::Key;

/// Buckets of the first table: `2^FIRST_BITS`.
const FIRST_BITS: u32 = 5;

/// Tables, each twice as large as the one before: the last has 2^28 buckets, where
/// chains simply get longer.
const LEVELS: usize = 24;

/// Average chain length at which the table doubles.
const LOAD: usize = 2;

/// A link of a chain.
type Link<T> = OnceLock<Box<Node<T>>>;

struct Node<T> {
    key: Key,
    value: T,
    next: Link<T>,
}

struct Table<T> {
    buckets: Box<[Link<T>]>,
}

impl<T> Table<T> {
    fn new(bits: u32) -> Self {
        Self {
            buckets: (0..1usize << bits).map(|_| OnceLock::new()).collect(),
        }
    }

    #[inline]
    fn bucket(&self, hash: u64) -> &Link<T> {
        // The length is a power of two: the mask keeps the low bits of the hash.
        &self.buckets[(hash as usize) & (self.buckets.len() - 1)]
    }

    /// Appends at the end of the key's chain. Only the index's writer calls it.
    fn push(&self, key: Key, value: T) {
        let mut link = self.bucket(key.get_hash());
        while let Some(node) = link.get() {
            link = &node.next;
        }
        // The writer is alone: the link it found empty is still empty.
        let _ = link.set(Box::new(Node {
            key,
            value,
            next: OnceLock::new(),
        }));
    }

    fn nodes(&self) -> impl Iterator<Item = &Node<T>> {
        self.buckets.iter().flat_map(|bucket| {
            std::iter::successors(bucket.get(), |node| node.next.get()).map(|node| &**node)
        })
    }
}

impl<T> Drop for Table<T> {
    /// Unlinks chains one node at a time: dropping a long chain recursively could
    /// overflow the stack.
    fn drop(&mut self) {
        for bucket in self.buckets.iter_mut() {
            let mut next = bucket.take();
            while let Some(mut node) = next {
                next = node.next.take();
            }
        }
    }
}

/// Whether `a` and `b` (of one hash) are made of the very same strings: true for a key of static name
/// and labels (`counter!("orders", "kind" => "new")`) and the retained copy of it in the
/// index, which point at the same bytes. Memory compared with itself is equal: this
/// skips `Key`'s comparison of the bytes, and with the hashes compared first, a
/// `counter!` call with static labels went from 272 instructions to 168
/// (`benches/facade_instructions.rs`).
#[inline]
fn same(a: &Key, b: &Key) -> bool {
    let (a_labels, b_labels) = (a.labels().as_slice(), b.labels().as_slice());
    std::ptr::eq(a.name(), b.name()) && std::ptr::eq(a_labels, b_labels)
}

/// Keys to values, read without a lock, written by one writer at a time.
pub(super) struct Index<T> {
    /// The level of the table in use.
    current: AtomicUsize,
    levels: [OnceLock<Table<T>>; LEVELS],
    /// The entries, counted by the writer, which holds this lock.
    pub(super) writer: Mutex<usize>,
}

impl<T: Clone> Index<T> {
    pub(super) fn new() -> Self {
        let levels: [OnceLock<Table<T>>; LEVELS] = std::array::from_fn(|_| OnceLock::new());
        let _ = levels[0].set(Table::new(FIRST_BITS));
        Self {
            current: AtomicUsize::new(0),
            levels,
            writer: Mutex::new(0),
        }
    }

    /// The value of `key`, without a lock or an allocation.
    #[inline]
    pub(super) fn get(&self, key: &Key) -> Option<&T> {
        let level = self.current.load(Ordering::Acquire);
        // Published before `current` pointed at it.
        let table = self.levels.get(level)?.get()?;
        let hash = key.get_hash();
        let mut link = table.bucket(hash);
        while let Some(node) = link.get() {
            if node.key.get_hash() == hash && (same(&node.key, key) || node.key == *key) {
                return Some(&node.value);
            }
            link = &node.next;
        }
        None
    }

    /// Adds `key`, unless it is there already (another writer came first).
    pub(super) fn insert(&self, key: Key, value: T) {
        // Only whole nodes are ever linked: a poisoned lock still guards a sound table.
        let mut len = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.get(&key).is_some() {
            return;
        }
        let level = self.current.load(Ordering::Acquire);
        let Some(table) = self.levels[level].get() else {
            return;
        };
        if *len >= table.buckets.len() * LOAD && level + 1 < LEVELS {
            let larger = Table::new(FIRST_BITS + level as u32 + 1);
            for node in table.nodes() {
                larger.push(node.key.clone(), node.value.clone());
            }
            larger.push(key, value);
            let _ = self.levels[level + 1].set(larger);
            self.current.store(level + 1, Ordering::Release);
        } else {
            table.push(key, value);
        }
        *len += 1;
    }

    /// The entries.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        *self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> std::fmt::Debug for Index<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("level", &self.current.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_across_growth() {
        let index = Index::new();
        let keys: Vec<Key> = (0..5_000)
            .map(|i| Key::from_parts("requests", vec![metrics::Label::new("id", i.to_string())]))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(index.get(key), None);
            index.insert(key.clone(), i);
            index.insert(key.clone(), usize::MAX);
        }
        assert_eq!(index.len(), keys.len());
        assert!(index.current.load(Ordering::Relaxed) >= 7, "{index:?}");
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(index.get(key), Some(&i));
        }
        assert_eq!(index.get(&Key::from_name("requests")), None);
    }

    #[test]
    fn a_static_key_is_the_same_as_its_retained_copy() {
        static LABELS: [metrics::Label; 1] = [metrics::Label::from_static_parts("kind", "new")];
        static KEY: Key = Key::from_static_parts("orders", &LABELS);
        assert!(same(&KEY, &KEY.to_retained()));
        let owned = || Key::from_parts("orders", vec![metrics::Label::new("kind", "new")]);
        assert!(!same(&owned(), &owned()), "equal, in other memory");
        assert!(!same(&KEY, &Key::from_static_name("orders")));
        let index = Index::new();
        index.insert(owned(), 1);
        assert_eq!(index.get(&KEY), Some(&1), "found by comparing the bytes");
    }

    #[test]
    fn readers_never_miss_a_key_present_before_they_started() {
        let index = std::sync::Arc::new(Index::new());
        let first = Key::from_static_name("first");
        index.insert(first.clone(), 0u32);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                for _ in 0..20_000 {
                    assert_eq!(index.get(&first), Some(&0));
                }
            });
            for i in 1..3_000u32 {
                index.insert(Key::from_name(format!("k{i}")), i);
            }
            reader.join().expect("the reader does not panic");
        });
    }
}
