//! The original events of pending reviews, kept in memory up to a byte budget.
//!
//! The join reads every event entering review from the changelog anyway; keeping its bytes
//! spares reading them back when the review ends, which at high decision rates is what bounds
//! the join (see `lookup`). Reviews end in roughly the order they began, so when the budget is
//! spent, newer events are left out (and read back later) rather than older ones evicted: the
//! older ones are the next to be needed.

use crate::review::IdHasher;
use std::collections::HashMap;
use std::sync::Arc;
use tollgate_schemas::EventFormat;

/// Event bytes by event id (with their changelog partition), within a budget. The ids are the
/// review state's own (shared, not copied).
#[derive(Debug, Default)]
pub(super) struct EventCache {
    events: HashMap<Arc<str>, Kept, IdHasher>,
    bytes: usize,
    budget: usize,
}

#[derive(Debug)]
struct Kept {
    partition: i32,
    format: EventFormat,
    event: Vec<u8>,
}

/// What one entry costs beyond its bytes: key, map slot and vector header, roughly.
const ENTRY_OVERHEAD: usize = 64;

impl EventCache {
    pub(super) fn new(budget: usize) -> Self {
        EventCache { budget, ..EventCache::default() }
    }

    fn cost(id: &str, event: &[u8]) -> usize {
        id.len() + event.len() + ENTRY_OVERHEAD
    }

    /// Keeps `event` for `id` (from changelog `partition`) when it fits in the budget; says
    /// whether it was kept.
    pub(super) fn insert(&mut self, id: Arc<str>, partition: i32, format: EventFormat, event: Vec<u8>) -> bool {
        let cost = Self::cost(&id, &event);
        if self.bytes + cost > self.budget || self.events.contains_key(&*id) {
            return false;
        }
        self.bytes += cost;
        self.events.insert(id, Kept { partition, format, event });
        true
    }

    /// Takes the event of `id` out (its review has ended).
    pub(super) fn take(&mut self, id: &str) -> Option<(EventFormat, Vec<u8>)> {
        let kept = self.events.remove(id)?;
        self.bytes -= Self::cost(id, &kept.event);
        Some((kept.format, kept.event))
    }

    /// Drops the events of changelog partitions this worker no longer holds (after a
    /// rebalance, their reviews are another worker's).
    pub(super) fn retain_partitions(&mut self, held: &[i32]) {
        let mut freed = 0;
        self.events.retain(|id, kept| {
            let keep = held.contains(&kept.partition);
            if !keep {
                freed += Self::cost(id, &kept.event);
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Bytes in use (within the budget).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits_and_frees_what_is_taken() {
        let event = vec![7u8; 100];
        let one = EventCache::cost("e1", &event);
        let mut cache = EventCache::new(2 * one);
        assert!(cache.insert("e1".into(), 0, EventFormat::Json, event.clone()));
        assert!(cache.insert("e2".into(), 1, EventFormat::Avro, event.clone()));
        // Full: a newer event is left out rather than an older one evicted.
        assert!(!cache.insert("e3".into(), 0, EventFormat::Json, event.clone()));
        assert_eq!(cache.bytes(), 2 * one);
        assert_eq!(cache.take("e2"), Some((EventFormat::Avro, event.clone())));
        assert_eq!(cache.take("e2"), None);
        assert!(cache.insert("e3".into(), 2, EventFormat::Json, event.clone()));
        assert_eq!(cache.take("e1").map(|(f, _)| f), Some(EventFormat::Json));
        assert_eq!(cache.bytes(), one);
        // A repeated entry is not counted twice.
        assert!(!cache.insert("e3".into(), 2, EventFormat::Json, event));
        assert_eq!(cache.bytes(), one);
    }

    #[test]
    fn a_rebalance_drops_the_partitions_given_away() {
        let event = vec![1u8; 10];
        let mut cache = EventCache::new(1 << 20);
        for (id, partition) in [("a", 0), ("b", 1), ("c", 2)] {
            assert!(cache.insert(id.into(), partition, EventFormat::Json, event.clone()));
        }
        cache.retain_partitions(&[1]);
        assert_eq!(cache.bytes(), EventCache::cost("b", &event));
        assert!(cache.take("a").is_none() && cache.take("c").is_none());
        assert!(cache.take("b").is_some());
        assert_eq!(cache.bytes(), 0);
    }
}
