//! Resolved cases: how each was decided, and an index by similarity field (same account, same
//! merchant category) for the "recent similar cases" shown with a case. Bounded: the oldest
//! dispositions are forgotten first.

use crate::records::Event;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tollgate_schemas::{ResolvedEvent, ReviewAction, ReviewOutcome, Route};

/// How a case was resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Disposition {
    pub event_id: Arc<str>,
    pub queue: Route,
    pub outcome: ReviewOutcome,
    /// The reviewer's action; `None` for a timeout fallback.
    pub action: Option<ReviewAction>,
    /// Reviewer id, or `policy_timeout`.
    pub actor: String,
    pub overridden: bool,
    pub rollback: bool,
    pub risk: f64,
    pub decided_at: i64,
    pub event: Event,
}

impl Disposition {
    pub fn from_resolved(r: ResolvedEvent<'static, Event>) -> Disposition {
        Disposition {
            event_id: Arc::from(r.event_id.as_ref()),
            queue: r.queue,
            outcome: r.outcome,
            action: r.action,
            actor: r.actor.into_owned(),
            overridden: r.overridden,
            rollback: r.rollback,
            risk: r.risk_score,
            decided_at: r.decided_at,
            event: r.event,
        }
    }
}

/// A resolved case similar to the one shown, and the field that makes it so.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarCase {
    pub matched_on: String,
    pub disposition: Disposition,
}

/// A similarity field and its value.
type Key = (String, String);

pub(super) struct History {
    /// Each disposition with the similarity keys it is indexed under.
    resolved: HashMap<Arc<str>, (Disposition, Vec<Key>)>,
    /// Event ids in the order they were resolved, for eviction.
    order: VecDeque<Arc<str>>,
    /// (field, value) → the most recent resolved event ids with it, newest last.
    by_key: HashMap<(String, String), VecDeque<Arc<str>>>,
    limit: usize,
    per_key: usize,
}

impl History {
    pub(super) fn new(limit: usize, per_key: usize) -> Self {
        History {
            resolved: HashMap::new(),
            order: VecDeque::new(),
            by_key: HashMap::new(),
            limit: limit.max(1),
            per_key: per_key.max(1),
        }
    }

    pub(super) fn contains(&self, event_id: &str) -> bool {
        self.resolved.contains_key(event_id)
    }

    pub(super) fn get(&self, event_id: &str) -> Option<&Disposition> {
        self.resolved.get(event_id).map(|(d, _)| d)
    }

    /// Records a disposition; a second resolution of the same event (a rollback after an
    /// approval, say) replaces the first.
    pub(super) fn insert(&mut self, d: Disposition, keys: Vec<(String, String)>) {
        let id = d.event_id.clone();
        if self.resolved.contains_key(&id) {
            self.forget(&id);
            self.order.retain(|x| *x != id);
        }
        for key in &keys {
            let ids = self.by_key.entry(key.clone()).or_default();
            ids.push_back(id.clone());
            if ids.len() > self.per_key {
                ids.pop_front();
            }
        }
        self.resolved.insert(id.clone(), (d, keys));
        self.order.push_back(id);
        while self.resolved.len() > self.limit {
            match self.order.pop_front() {
                Some(oldest) => self.forget(&oldest),
                None => break,
            }
        }
    }

    /// Removes a disposition and its index entries (the caller maintains `order`).
    fn forget(&mut self, id: &Arc<str>) {
        if let Some((_, keys)) = self.resolved.remove(id) {
            for key in keys {
                if let Some(ids) = self.by_key.get_mut(&key) {
                    ids.retain(|x| x != id);
                    if ids.is_empty() {
                        self.by_key.remove(&key);
                    }
                }
            }
        }
    }

    /// Up to `per_key` most recent dispositions sharing any of `keys`, newest first, without
    /// `exclude` and without repeats.
    pub(super) fn similar(&self, keys: &[(String, String)], exclude: &str) -> Vec<SimilarCase> {
        let mut found: Vec<SimilarCase> = Vec::new();
        for key in keys {
            for id in self.by_key.get(key).into_iter().flat_map(|ids| ids.iter().rev()) {
                if &**id == exclude || found.iter().any(|s| s.disposition.event_id == *id) {
                    continue;
                }
                if let Some((d, _)) = self.resolved.get(id) {
                    found.push(SimilarCase { matched_on: key.0.clone(), disposition: d.clone() });
                }
            }
        }
        found.sort_by_key(|s| std::cmp::Reverse(s.disposition.decided_at));
        found.truncate(self.per_key);
        found
    }
}
