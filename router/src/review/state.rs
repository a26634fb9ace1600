//! Pending reviews in a concurrent map, and the transitions decisions and time make on them.

use super::effects::{Actor, Effect, Escalation, Resolution, UnjoinedReason};
use super::Outcome;
use crate::config::{Fallback, QueueConfig, ReviewConfig};
use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tollgate_schemas::{ReviewAction, ReviewDecision, Route};

/// The longest between two sweeps of the resolved marks for those past their retention. A
/// week of marks is many more entries than are pending: walking them on every tick made the
/// tick's work grow with the retention instead of the traffic. A mark is forgotten at most
/// this long (or an eighth of the retention, when shorter) after its time.
const RESOLVED_SWEEP_MS: i64 = 60_000;

/// One queue's SLA tiers and rules, in milliseconds.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub tiers_ms: Vec<i64>,
    pub fallback: Fallback,
    pub post_verify: bool,
}

impl QueueSettings {
    fn from_config(q: &QueueConfig) -> Self {
        QueueSettings {
            tiers_ms: q.tiers.iter().map(|d| d.0.as_millis() as i64).collect(),
            fallback: q.fallback,
            post_verify: q.post_verify,
        }
    }
}

/// The review settings the state machine needs.
#[derive(Debug, Clone)]
pub struct ReviewSettings {
    pub sync_review: QueueSettings,
    pub async_review: QueueSettings,
    pub recommendation_cut: f64,
    pub decision_grace_ms: i64,
    pub resolved_retention_ms: i64,
}

impl ReviewSettings {
    pub fn from_config(c: &ReviewConfig) -> Self {
        ReviewSettings {
            sync_review: QueueSettings::from_config(&c.sync_review),
            async_review: QueueSettings::from_config(&c.async_review),
            recommendation_cut: c.recommendation_cut,
            decision_grace_ms: c.decision_grace.0.as_millis() as i64,
            resolved_retention_ms: c.resolved_retention.0.as_millis() as i64,
        }
    }

    fn queue(&self, route: Route) -> &QueueSettings {
        match route {
            Route::SyncReview => &self.sync_review,
            _ => &self.async_review,
        }
    }

    /// The SLA of a review queue (ms): the time of its first tier.
    pub fn sla_ms(&self, queue: Route) -> i64 {
        self.queue(queue).tiers_ms.first().copied().unwrap_or(0)
    }

    /// The model's recommendation for a risk score.
    pub fn recommendation(&self, risk: f64) -> Outcome {
        if risk >= self.recommendation_cut {
            Outcome::Rejected
        } else {
            Outcome::Approved
        }
    }
}

/// What the router tells the review state when it routes an event to review.
#[derive(Debug, Clone)]
pub struct PendingInput<'a> {
    pub event_id: &'a str,
    pub queue: Route,
    pub risk: f64,
    pub confidence: f64,
    pub routed_at: i64,
    /// Changelog (and decisions) partition of the event.
    pub partition: i32,
    /// Offset of the changelog record that carries the original event.
    pub event_offset: i64,
    /// Pre-accepted (a post-verify queue, or an audit sample): a reject must be compensated.
    pub post_verify: bool,
    pub policy_version: &'a str,
    pub model_version: &'a str,
    pub rule: &'a str,
}

/// Figures of one review queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub pending: usize,
    /// Every tier ran out and the fallback is hold.
    pub held: usize,
    /// Age of the oldest waiting review (ms).
    pub oldest_ms: i64,
}

impl QueueStats {
    fn count(&mut self, entry: &Pending, now: i64) {
        self.pending += 1;
        self.held += usize::from(entry.held);
        self.oldest_ms = self.oldest_ms.max(now - entry.routed_at);
    }
}

/// What a tick did, and the review queues' figures after it.
#[derive(Debug)]
pub struct Tick {
    pub effects: Vec<Effect>,
    /// The sync and async review queues' figures, gathered in the tick's one pass over the
    /// pending reviews (a pass per queue on top of it doubled the tick's work).
    pub queues: [(Route, QueueStats); 2],
}

/// An event waiting for a human. Small on purpose (no payload): see the README for the
/// measured size per entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub queue: Route,
    /// Increases with every change; a restore keeps the highest, so the worker's own changelog
    /// entries, read back, change nothing.
    pub revision: u32,
    /// Current escalation tier, from 1.
    pub tier: u8,
    /// Every tier ran out and the fallback is `hold`.
    pub held: bool,
    pub info_requested: bool,
    pub post_verify: bool,
    pub partition: i32,
    /// Offset (in `partition` of the changelog) of the record carrying the original event.
    pub event_offset: i64,
    pub risk: f32,
    pub confidence: f32,
    pub routed_at: i64,
    /// When the current tier's time runs out (ms since the epoch).
    pub deadline: i64,
    /// Policy version, model version and rule, shared by every review they produced.
    pub provenance: Arc<Provenance>,
    /// Fingerprints of the non-final decisions applied, to recognise their redelivery.
    pub applied: Vec<Arc<str>>,
}

/// What routed a review: few distinct values, interned, so each pending entry holds one thin
/// pointer instead of three strings.
#[derive(Debug, PartialEq, Eq)]
pub struct Provenance {
    pub policy_version: Box<str>,
    pub model_version: Box<str>,
    pub rule: Box<str>,
}

/// Remembered after a review ended, so a repeated decision is recognised.
#[derive(Debug, Clone)]
struct ResolvedMark {
    fingerprints: Arc<[Arc<str>]>,
    at: i64,
    partition: i32,
}

/// A decision that arrived before its event.
#[derive(Debug, Clone)]
struct Parked {
    decision: ReviewDecision<'static>,
    received_at: i64,
}

/// The hasher of the maps keyed by event id: seeded at random per map, as event ids come from
/// outside; faster than the standard library's SipHash on short keys.
pub(crate) type IdHasher = foldhash::fast::RandomState;

/// All pending reviews of the partitions this instance owns.
#[derive(Debug)]
pub struct ReviewState {
    settings: ReviewSettings,
    pending: DashMap<Arc<str>, Pending, IdHasher>,
    resolved: DashMap<Arc<str>, ResolvedMark, IdHasher>,
    parked: DashMap<Arc<str>, (i32, Vec<Parked>), IdHasher>,
    /// Policy and model versions and rule names are few; entries share one copy of each.
    provenances: Mutex<Vec<Arc<Provenance>>>,
    /// When the resolved marks are next swept for those past their retention (ms).
    next_sweep: AtomicI64,
}

/// The reviewer who made `decision`.
fn reviewer(decision: &ReviewDecision<'_>) -> Actor {
    Actor::Reviewer { id: Arc::from(&*decision.reviewer_id), role: Arc::from(&*decision.reviewer_role) }
}

impl ReviewState {
    pub fn new(settings: ReviewSettings) -> Self {
        ReviewState {
            settings,
            pending: DashMap::default(),
            resolved: DashMap::default(),
            parked: DashMap::default(),
            provenances: Mutex::new(Vec::new()),
            next_sweep: AtomicI64::new(i64::MIN),
        }
    }

    /// The shared provenance with these values.
    pub fn provenance(&self, policy_version: &str, model_version: &str, rule: &str) -> Arc<Provenance> {
        let mut known = self.provenances.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let wanted = |p: &&Arc<Provenance>| {
            &*p.policy_version == policy_version && &*p.model_version == model_version && &*p.rule == rule
        };
        // Few distinct values (one per policy version × model version × rule): a scan is cheap.
        if let Some(found) = known.iter().find(wanted) {
            return Arc::clone(found);
        }
        let new = Arc::new(Provenance {
            policy_version: policy_version.into(),
            model_version: model_version.into(),
            rule: rule.into(),
        });
        known.push(Arc::clone(&new));
        new
    }

    /// An event entered review. Re-admitting a pending or resolved event (a replayed routing)
    /// changes nothing. Decisions that arrived first are applied now.
    pub fn admit(&self, input: PendingInput<'_>, now: i64) -> Vec<Effect> {
        self.admit_keyed(input, now).1
    }

    /// [`ReviewState::admit`], also returning the state's own copy of the event id when the
    /// event was admitted (`None` when it was pending or resolved already), to share rather
    /// than copy.
    pub fn admit_keyed(&self, input: PendingInput<'_>, now: i64) -> (Option<Arc<str>>, Vec<Effect>) {
        if self.pending.contains_key(input.event_id) || self.resolved.contains_key(input.event_id) {
            return (None, Vec::new());
        }
        let pending = Pending {
            queue: input.queue,
            revision: 0,
            tier: 1,
            held: false,
            info_requested: false,
            post_verify: input.post_verify,
            partition: input.partition,
            event_offset: input.event_offset,
            risk: input.risk as f32,
            confidence: input.confidence as f32,
            routed_at: input.routed_at,
            deadline: input.routed_at + self.settings.sla_ms(input.queue),
            provenance: self.provenance(input.policy_version, input.model_version, input.rule),
            applied: Vec::new(),
        };
        let id: Arc<str> = Arc::from(input.event_id);
        self.pending.insert(Arc::clone(&id), pending);
        let mut effects = Vec::new();
        if let Some((_, (_, parked))) = self.parked.remove(&id) {
            for p in parked {
                effects.extend(self.decide(p.decision, input.partition, now));
            }
        }
        (Some(id), effects)
    }

    /// Restores a pending entry from the changelog (no effects: they happened before) when it
    /// is newer than what is held. Returns whether it was applied.
    pub fn restore(&self, event_id: &str, mut pending: Pending) -> bool {
        if self.resolved.contains_key(event_id) {
            return false;
        }
        if let Some(current) = self.pending.get(event_id) {
            if current.revision >= pending.revision {
                return false;
            }
            if pending.event_offset < 0 {
                pending.event_offset = current.event_offset;
            }
        }
        let p = &pending.provenance;
        pending.provenance = self.provenance(&p.policy_version, &p.model_version, &p.rule);
        self.pending.insert(Arc::from(event_id), pending);
        true
    }

    /// Restores the memory of a resolved event from the changelog; decisions that were waiting
    /// for the event are answered (duplicates, or already resolved).
    pub fn restore_resolved(
        &self,
        event_id: &str,
        fingerprints: Arc<[Arc<str>]>,
        at: i64,
        partition: i32,
    ) -> Vec<Effect> {
        self.pending.remove(event_id);
        self.resolved.insert(Arc::from(event_id), ResolvedMark { fingerprints, at, partition });
        let mut effects = Vec::new();
        if let Some((_, (_, parked))) = self.parked.remove(event_id) {
            for p in parked {
                effects.extend(self.decide(p.decision, partition, at));
            }
        }
        effects
    }

    /// Applies a reviewer's decision consumed from `partition`.
    pub fn decide(&self, decision: ReviewDecision<'_>, partition: i32, now: i64) -> Vec<Effect> {
        let fingerprint: Arc<str> = Arc::from(decision.fingerprint());
        let id: &str = &decision.event_id;
        // An event is never pending and resolved at once (every transition takes it out of
        // one map before putting it in the other), so the usual case, a final decision on a
        // pending review, needs no look-up among the resolved marks.
        if decision.action.is_final() {
            // Taken out at once (no copy of the entry), unless this decision was applied before.
            if let Some((event_id, pending)) = self.pending.remove_if(id, |_, p| !p.applied.contains(&fingerprint)) {
                return vec![self.resolve(event_id, pending, fingerprint, &decision)];
            }
        }
        if let Some(mark) = self.resolved.get(id) {
            let event_id = Arc::clone(mark.key());
            if mark.fingerprints.contains(&fingerprint) {
                return vec![Effect::Duplicate { event_id }];
            }
            drop(mark);
            let decision = Box::new(decision.into_owned());
            return vec![Effect::Unjoined { decision, reason: UnjoinedReason::AlreadyResolved }];
        }
        let Some(mut entry) = self.pending.get_mut(id) else {
            // The routed event may not be visible yet (decisions travel on another topic).
            let key: Arc<str> = Arc::from(id);
            let mut slot = self.parked.entry(key).or_insert_with(|| (partition, Vec::new()));
            slot.1.push(Parked { decision: decision.into_owned(), received_at: now });
            return Vec::new();
        };
        let event_id = Arc::clone(entry.key());
        if entry.applied.contains(&fingerprint) {
            return vec![Effect::Duplicate { event_id }];
        }
        if decision.action.is_final() {
            // Admitted between the two lookups: take it out now.
            drop(entry);
            return self.decide(decision, partition, now);
        }
        let actor = reviewer(&decision);
        entry.applied.push(fingerprint);
        entry.revision += 1;
        if decision.action == ReviewAction::RequestInfo {
            entry.info_requested = true;
            return vec![Effect::InfoRequested {
                event_id,
                actor,
                rationale: Arc::from(&*decision.rationale),
                at: now,
                pending: entry.clone(),
            }];
        }
        let from = entry.tier;
        let tiers = &self.settings.queue(entry.queue).tiers_ms;
        // Beyond the last tier, the last tier's time applies again; then the fallback.
        let next_ms = tiers.get(usize::from(from)).or(tiers.last()).copied().unwrap_or(0);
        entry.tier = from.saturating_add(1);
        entry.deadline = now + next_ms;
        entry.held = false;
        vec![Effect::Escalated(Box::new(Escalation {
            event_id,
            queue: entry.queue,
            from_tier: from,
            to_tier: entry.tier,
            age_ms: now - entry.routed_at,
            actor,
            at: now,
            pending: entry.clone(),
        }))]
    }

    /// Ends the review `pending` (taken out of the pending map) with a final decision.
    fn resolve(
        &self,
        event_id: Arc<str>,
        pending: Pending,
        fingerprint: Arc<str>,
        decision: &ReviewDecision<'_>,
    ) -> Effect {
        let outcome = if decision.action == ReviewAction::Approve { Outcome::Approved } else { Outcome::Rejected };
        let fingerprints: Arc<[Arc<str>]> = pending.applied.iter().cloned().chain([fingerprint]).collect();
        let mark = ResolvedMark {
            fingerprints: Arc::clone(&fingerprints),
            at: decision.decided_at,
            partition: pending.partition,
        };
        self.resolved.insert(Arc::clone(&event_id), mark);
        Effect::Resolved(Box::new(self.resolution(
            fingerprints,
            event_id,
            pending,
            outcome,
            reviewer(decision),
            Some(decision.action),
            &decision.rationale,
            decision.second_signoff.as_deref(),
            decision.decided_at,
        )))
    }

    #[allow(clippy::too_many_arguments)]
    fn resolution(
        &self,
        fingerprints: Arc<[Arc<str>]>,
        event_id: Arc<str>,
        pending: Pending,
        outcome: Outcome,
        actor: Actor,
        action: Option<ReviewAction>,
        rationale: &str,
        second_signoff: Option<&str>,
        decided_at: i64,
    ) -> Resolution {
        let recommendation = self.settings.recommendation(f64::from(pending.risk));
        let sla_end = pending.routed_at + self.settings.sla_ms(pending.queue);
        Resolution {
            event_id,
            queue: pending.queue,
            outcome,
            recommendation,
            overridden: action.is_some() && outcome != recommendation,
            actor,
            action,
            rationale: Arc::from(rationale),
            second_signoff: second_signoff.map(Arc::from),
            latency_ms: decided_at - pending.routed_at,
            sla_met: decided_at <= sla_end,
            tier: pending.tier,
            decided_at,
            rollback: pending.post_verify && outcome == Outcome::Rejected,
            pending,
            fingerprints,
        }
    }

    /// Advances time: escalates cases whose tier ran out, applies fallbacks, dead-letters
    /// decisions whose event never came, forgets old resolutions, and gathers the queues'
    /// figures. One pass over the pending reviews; the resolved marks are swept at most every
    /// `RESOLVED_SWEEP_MS`.
    pub fn tick(&self, now: i64) -> Tick {
        let mut effects = Vec::new();
        let mut timed_out = Vec::new();
        let mut queues = [(Route::SyncReview, QueueStats::default()), (Route::AsyncReview, QueueStats::default())];
        for mut entry in self.pending.iter_mut() {
            let tiers = &self.settings.queue(entry.queue).tiers_ms;
            // Catch up on every tier that ran out (after downtime there may be several).
            let mut ended = false;
            while !entry.held && now >= entry.deadline {
                if usize::from(entry.tier) < tiers.len() {
                    let from = entry.tier;
                    entry.deadline += tiers[usize::from(from)];
                    entry.tier += 1;
                    entry.revision += 1;
                    effects.push(Effect::Escalated(Box::new(Escalation {
                        event_id: Arc::clone(entry.key()),
                        queue: entry.queue,
                        from_tier: from,
                        to_tier: entry.tier,
                        age_ms: now - entry.routed_at,
                        actor: Actor::PolicyTimeout,
                        at: now,
                        pending: entry.clone(),
                    })));
                } else if self.settings.queue(entry.queue).fallback == Fallback::Hold {
                    entry.held = true;
                    entry.revision += 1;
                    effects.push(Effect::Held {
                        event_id: Arc::clone(entry.key()),
                        queue: entry.queue,
                        age_ms: now - entry.routed_at,
                        at: now,
                        pending: entry.clone(),
                    });
                } else {
                    timed_out.push(Arc::clone(entry.key()));
                    ended = true;
                    break;
                }
            }
            if let (false, Some((_, stats))) = (ended, queues.iter_mut().find(|(q, _)| *q == entry.queue)) {
                stats.count(&entry, now);
            }
        }
        for id in timed_out {
            let Some((event_id, pending)) = self.pending.remove(&id) else { continue };
            let outcome = match self.settings.queue(pending.queue).fallback {
                Fallback::Approve => Outcome::Approved,
                _ => Outcome::Rejected,
            };
            let fingerprints: Arc<[Arc<str>]> = pending.applied.as_slice().into();
            self.resolved.insert(
                Arc::clone(&event_id),
                ResolvedMark { fingerprints: Arc::clone(&fingerprints), at: now, partition: pending.partition },
            );
            let rationale = format!("no decision within every tier; fallback {}", outcome.as_str());
            effects.push(Effect::Resolved(Box::new(self.resolution(
                fingerprints,
                event_id,
                pending,
                outcome,
                Actor::PolicyTimeout,
                None,
                &rationale,
                None,
                now,
            ))));
        }
        let grace = self.settings.decision_grace_ms;
        self.parked.retain(|_, (_, decisions)| {
            decisions.retain(|p| {
                let keep = now < p.received_at + grace;
                if !keep {
                    effects.push(Effect::Unjoined {
                        decision: Box::new(p.decision.clone()),
                        reason: UnjoinedReason::UnknownEvent,
                    });
                }
                keep
            });
            !decisions.is_empty()
        });
        let retention = self.settings.resolved_retention_ms;
        if now >= self.next_sweep.load(Ordering::Relaxed) {
            self.next_sweep.store(now + RESOLVED_SWEEP_MS.min(retention / 8).max(1), Ordering::Relaxed);
            self.resolved.retain(|id, mark| {
                let keep = now < mark.at + retention;
                if !keep {
                    effects.push(Effect::Forget { event_id: Arc::clone(id), partition: mark.partition });
                }
                keep
            });
        }
        Tick { effects, queues }
    }

    /// Drops the state of a partition this instance no longer owns (its new owner restores it
    /// from the changelog).
    pub fn revoke(&self, partition: i32) {
        self.pending.retain(|_, p| p.partition != partition);
        self.resolved.retain(|_, m| m.partition != partition);
        self.parked.retain(|_, (p, _)| *p != partition);
    }

    /// The pending entry of an event.
    pub fn get(&self, event_id: &str) -> Option<Pending> {
        self.pending.get(event_id).map(|e| e.clone())
    }

    /// Pending reviews in `queue`, how many are held, and the age of the oldest at `now`.
    /// (A pass of its own: [`ReviewState::tick`] gathers the same figures in its pass.)
    pub fn queue_stats(&self, queue: Route, now: i64) -> QueueStats {
        let mut stats = QueueStats::default();
        for entry in self.pending.iter().filter(|e| e.queue == queue) {
            stats.count(&entry, now);
        }
        stats
    }

    /// Decisions waiting for their event.
    pub fn parked_count(&self) -> usize {
        self.parked.iter().map(|e| e.1.len()).sum()
    }
}
