//! The state store behind the per-source flood limiter: governor's own [`DashMap`] of GCRA
//! states, shared with [`AdmissionControl`](super::AdmissionControl) so that it can ask
//! "is this source tracked?" and "is the store full?" without inserting a key.
//!
//! governor inserts every key it is asked about and never evicts by itself (issue #171 of
//! governor: memory denial of service by spraying keys). Counting insertions here lets the
//! caller send sources beyond `flood.max_sources` to a shared overflow bucket instead.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A keyed GCRA state store that counts its keys.
#[derive(Debug)]
pub(crate) struct CountingStore<K: Hash + Eq> {
    inner: Arc<Inner<K>>,
}

#[derive(Debug)]
struct Inner<K: Hash + Eq> {
    map: DashMap<K, InMemoryState>,
    /// Keys inserted since the last recount: exact on one thread, approximate (never by
    /// more than the number of concurrent inserters) otherwise.
    count: AtomicUsize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> CountingStore<K> {
    /// A store that reports itself full at `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        CountingStore {
            inner: Arc::new(Inner {
                map: DashMap::new(),
                count: AtomicUsize::new(0),
                capacity,
            }),
        }
    }

    /// Another handle to the same store (one goes into the limiter, one stays outside).
    pub fn handle(&self) -> Self {
        CountingStore {
            inner: Arc::clone(&self.inner),
        }
    }

    /// At or over capacity: new keys must not be inserted. One atomic load.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.inner.count.load(Ordering::Relaxed) >= self.inner.capacity
    }

    pub fn contains(&self, key: &K) -> bool {
        self.inner.map.contains_key(key)
    }

    pub fn keys(&self) -> usize {
        self.inner.map.len()
    }
}

impl<K: Hash + Eq + Clone> StateStore for CountingStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // As governor's own DashMap store: a shared-lock lookup first, the entry API only
        // for a key not seen yet.
        if let Some(state) = self.inner.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        match self.inner.map.entry(key.clone()) {
            Entry::Occupied(e) => e.get().measure_and_replace(&NotKeyed::NonKey, f),
            Entry::Vacant(e) => {
                self.inner.count.fetch_add(1, Ordering::Relaxed);
                e.insert(InMemoryState::default())
                    .measure_and_replace(&NotKeyed::NonKey, f)
            }
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for CountingStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.inner.map, drop_below);
        self.inner
            .count
            .store(self.inner.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.inner.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.inner.map.len()
    }

    fn is_empty(&self) -> bool {
        self.inner.map.is_empty()
    }
}
