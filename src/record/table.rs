//! A bounded map that only grows, read without locks: how the recorder finds route ids,
//! error types and series.
//!
//! Entries are written once and never removed, and there are at most `max` of them, so
//! an open-addressing table of at least `2 × max` slots, each a [`OnceLock`], is enough:
//! a reader probes slots with plain loads until it finds its key or an empty slot, and
//! writers insert under a mutex (once per entry for the life of the table). A reader
//! that finds an empty slot while a writer fills it takes the mutex and looks again,
//! unless the table is full: then every entry is visible and it need not look again.
//! No reader ever writes to memory another thread reads, so threads looking up the same
//! entries at once do not slow each other down, as a read-write lock's read would: a
//! `RwLock<HashMap>` in its place cost 77 instructions more a request, before any
//! contention (`benches/README.md`, "What each mechanism buys").

use std::borrow::Borrow;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// At most `max` entries of `K` to `V`.
pub(crate) struct Table<K, V> {
    /// A power of two, at least twice `max`: a probe always ends at an empty slot.
    slots: Box<[Slot<K, V>]>,
    max: usize,
    /// The number of entries; held while inserting.
    writer: Mutex<usize>,
    /// Set (after the last insert) once there are `max` entries: new keys are then
    /// turned away without the lock, which past the cardinality limit every request of
    /// a new label set would take.
    full: AtomicBool,
}

/// An entry, boxed: an empty slot costs 16 bytes, whatever the size of the entry.
type Slot<K, V> = OnceLock<Box<(K, V)>>;

impl<K: Hash + Eq, V> Table<K, V> {
    /// An empty table for at most `max` entries.
    pub(crate) fn new(max: usize) -> Self {
        let capacity = max.saturating_mul(2).max(2).next_power_of_two();
        Self {
            slots: (0..capacity).map(|_| OnceLock::new()).collect(),
            max,
            writer: Mutex::new(0),
            full: AtomicBool::new(false),
        }
    }

    /// The value of `key`, if it is in the table: a lookup that never inserts.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.probe(key) {
            Probe::Found(value) => Some(value),
            Probe::Empty(_) => None,
        }
    }

    /// The value of `key`, inserted with `make` if it is not there yet; `None` when the
    /// table is full. `make` gets the number of entries before it: ids can be numbered.
    #[inline]
    pub(crate) fn get_or_insert<Q>(&self, key: &Q, make: impl FnOnce(usize) -> (K, V)) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.probe(key) {
            Probe::Found(value) => Some(value),
            Probe::Empty(_) => self.insert(key, make),
        }
    }

    #[cold]
    fn insert<Q>(&self, key: &Q, make: impl FnOnce(usize) -> (K, V)) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.full.load(Ordering::Acquire) {
            // Every insert happened before `full` was set: a second look is final.
            return match self.probe(key) {
                Probe::Found(value) => Some(value),
                Probe::Empty(_) => None,
            };
        }
        // Nothing panics while the lock is held but `make`, which leaves the count as it
        // was: a poisoned lock still holds a true count.
        let mut len = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match self.probe(key) {
            Probe::Found(value) => return Some(value),
            Probe::Empty(slot) => slot,
        };
        if *len >= self.max {
            return None;
        }
        let entry = make(*len);
        debug_assert!(entry.0.borrow() == key, "`make` makes the entry of `key`");
        // Only writers fill slots, and they hold the lock: the slot is still empty.
        let (_, value) = &**self.slots[slot].get_or_init(|| Box::new(entry));
        *len += 1;
        if *len >= self.max {
            self.full.store(true, Ordering::Release);
        }
        Some(value)
    }

    /// Every entry, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots
            .iter()
            .filter_map(|slot| slot.get().map(|entry| (&entry.0, &entry.1)))
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        *self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    fn probe<Q>(&self, key: &Q) -> Probe<'_, V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mask = self.slots.len() - 1;
        let mut index = BuildHasherDefault::<FxHasher>::default().hash_one(key) as usize & mask;
        loop {
            match self.slots[index].get() {
                Some(entry) if entry.0.borrow() == key => return Probe::Found(&entry.1),
                Some(_) => index = (index + 1) & mask,
                None => return Probe::Empty(index),
            }
        }
    }
}

enum Probe<'a, V> {
    Found(&'a V),
    /// The key is not in the table; this slot is where it would go.
    Empty(usize),
}

impl<V> Table<Box<str>, V> {
    /// The names of the table by the id `id` gives each entry (`None`: it has none), for
    /// the scrape: `None` where an id has no name.
    pub(crate) fn names_by_id(&self, id: impl Fn(&V) -> Option<usize>) -> Vec<Option<&str>> {
        let mut names: Vec<Option<&str>> = Vec::new();
        for (name, value) in self.iter() {
            let Some(id) = id(value) else { continue };
            if names.len() <= id {
                names.resize(id + 1, None);
            }
            names[id] = Some(name);
        }
        names
    }
}

impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("max", &self.max)
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// The multiply-rotate hash of rustc (FxHash): a few cycles for a packed key or a short
/// route template. Not collision resistant, which is acceptable here: tables are bounded,
/// so crafted keys can at worst make a lookup scan a table of `2 × max` slots, never grow
/// it.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    /// Whole words, then the last word again (overlapping) for the rest: route
    /// templates are a few words long, so this is a few multiplies and no byte loop.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let word = |at: usize| {
            let mut word = [0; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        if bytes.len() < 8 {
            let mut word = [0; 8];
            word[..bytes.len()].copy_from_slice(bytes);
            self.add(u64::from_le_bytes(word));
            return;
        }
        let mut at = 0;
        while at + 8 < bytes.len() {
            self.add(word(at));
            at += 8;
        }
        self.add(word(bytes.len() - 8));
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The high bits are the best mixed: fold them into the low bits the mask keeps.
        self.0 ^ (self.0 >> 32)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn finds_what_it_inserted_and_stops_at_its_bound() {
        let table: Table<Box<str>, u32> = Table::new(3);
        for (n, name) in ["/a", "/b", "/c"].into_iter().enumerate() {
            let n = n as u32;
            assert_eq!(table.get_or_insert(name, |_| (name.into(), n)), Some(&n));
        }
        assert_eq!(
            table.get_or_insert("/d", |_| ("/d".into(), 9)),
            None,
            "full"
        );
        assert_eq!(table.get("/b"), Some(&1));
        assert_eq!(table.get("/d"), None);
        assert_eq!(
            table.get_or_insert("/a", |_| unreachable!("present")),
            Some(&0)
        );
        assert_eq!(table.len(), 3);
        assert_eq!(table.iter().count(), 3);
    }

    #[test]
    fn colliding_keys_are_all_found() {
        // 64 slots for 32 keys: many share a first slot and probe on.
        let table: Table<u64, u64> = Table::new(32);
        for key in 0..32 {
            table.get_or_insert(&(key << 40), |_| (key << 40, key));
        }
        for key in 0..32 {
            assert_eq!(table.get(&(key << 40)), Some(&key));
        }
    }

    /// Once the table is full, a key that is not in it is turned away without the
    /// writers' lock: past the cardinality limit, every request of a new label set (a
    /// scanner's, say) would otherwise take one lock shared by all of them.
    #[test]
    fn a_full_table_turns_new_keys_away_without_the_lock() {
        let table = Arc::new(Table::<u64, u64>::new(1));
        assert_eq!(table.get_or_insert(&1, |_| (1, 1)), Some(&1));
        let held = table.writer.lock().expect("not poisoned");
        let (done, finished) = std::sync::mpsc::channel();
        let looking = {
            let table = table.clone();
            std::thread::spawn(move || {
                let found = table.get_or_insert(&2, |_| (2, 2)).copied();
                let _ = done.send(found);
            })
        };
        let answer = finished.recv_timeout(std::time::Duration::from_secs(2));
        drop(held);
        looking.join().expect("the lookup does not panic");
        assert_eq!(
            answer,
            Ok(None),
            "a new key in a full table waited for the writers' lock"
        );
    }

    #[test]
    fn threads_inserting_at_once_agree_on_every_entry() {
        let table = Arc::new(Table::<u64, u64>::new(1_000));
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for key in 0..2_000 {
                        let key = (key * 7 + thread) % 2_000;
                        if let Some(value) = table.get_or_insert(&key, |_| (key, key * 3)) {
                            assert_eq!(*value, key * 3);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no thread panics");
        }
        assert_eq!(
            table.len(),
            1_000,
            "exactly the bound, however the race went"
        );
        assert_eq!(table.iter().count(), 1_000);
    }
}
