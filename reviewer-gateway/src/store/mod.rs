//! The gateway's view of the review queues, built from Kafka records: routed records open
//! cases, escalation records move their tier, resolved records close them (into the history of
//! dispositions that similar-case lookups read), decision records and case-state records bring
//! back what this gateway (or an earlier run of it) already did.
//!
//! Records of different topics arrive in no particular order (a replay may read a resolution
//! before the routed record), so every `apply_*` works whatever came first, and applying a
//! record twice changes nothing. Mutations a reviewer makes (claims, sign-offs, decisions) are
//! serialised per case by [`CaseStore::lock`], held across the Kafka write.

mod history;

pub use history::{Disposition, SimilarCase};

use crate::records::Event;
use dashmap::DashMap;
use history::History;
use std::sync::{Arc, Mutex};
use tollgate_schemas::{
    CaseGate, Claim, EscalationRecord, PendingSignoff, ResolvedEvent, ReviewAction, ReviewDecision, Route, RoutedRecord,
};

/// Where a record was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What the router said about a case when it routed it.
#[derive(Debug, Clone)]
pub struct RoutedCase {
    pub queue: Route,
    pub rule: String,
    pub guardrail: bool,
    pub risk: f64,
    pub confidence: f64,
    pub model_version: String,
    pub policy_version: String,
    /// Top feature contributions, largest first.
    pub explanation: Vec<(String, f64)>,
    pub routed_at: i64,
    pub event: Event,
    /// The amount field of the event (0 when absent or not a number).
    pub amount: f64,
    pub source: Position,
}

/// A decision this gateway sent to the router, not yet joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub decision_id: String,
    pub action: ReviewAction,
    pub reviewer_id: String,
    pub at: i64,
}

/// The gateway's own state of a case (persisted as a [`CaseGate`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gate {
    pub revision: i64,
    pub claim: Option<Claim<'static>>,
    pub signoff: Option<PendingSignoff<'static>>,
}

impl Gate {
    /// The claim, if it has not expired at `now`.
    pub fn live_claim(&self, now: i64) -> Option<&Claim<'static>> {
        self.claim.as_ref().filter(|c| c.expires_at > now)
    }

    /// The record that persists this state.
    pub fn record(&self, event_id: &str) -> CaseGate<'static> {
        CaseGate {
            event_id: event_id.to_owned().into(),
            revision: self.revision,
            claim: self.claim.clone(),
            signoff: self.signoff.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Case {
    routed: Option<Arc<RoutedCase>>,
    tier: i32,
    deadline: Option<i64>,
    held: bool,
    info_requested: bool,
    submitted: Option<Submitted>,
    gate: Gate,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for a reviewer.
    Open,
    /// A first reviewer decided; a second must sign off.
    AwaitingSignoff,
    /// A final decision went to the router; the case closes when it is joined.
    Submitted,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::AwaitingSignoff => "awaiting_signoff",
            Status::Submitted => "submitted",
        }
    }
}

/// A consistent copy of one open case.
#[derive(Debug, Clone)]
pub struct CaseView {
    pub event_id: Arc<str>,
    pub routed: Arc<RoutedCase>,
    pub tier: i32,
    /// When the current tier's time runs out; `None` when held.
    pub deadline: Option<i64>,
    pub held: bool,
    pub info_requested: bool,
    pub submitted: Option<Submitted>,
    pub gate: Gate,
}

impl CaseView {
    pub fn status(&self) -> Status {
        if self.submitted.is_some() {
            Status::Submitted
        } else if self.gate.signoff.is_some() {
            Status::AwaitingSignoff
        } else {
            Status::Open
        }
    }

    /// Expected business impact: amount × risk.
    pub fn impact(&self) -> f64 {
        self.routed.amount * self.routed.risk
    }
}

/// An event's amount: a number, or a number written as text, which is how Avro decimals reach
/// the gateway (`"12.34"`) and how many payment APIs carry money. Anything else counts as no
/// amount.
fn amount_of(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok().filter(|a| a.is_finite()),
        _ => None,
    }
}

/// What a record changed, for notifications.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Nothing,
    /// A case entered a review queue.
    Opened {
        event_id: Arc<str>,
        queue: Route,
        at: i64,
    },
    /// A case moved to a higher tier.
    Escalated {
        event_id: Arc<str>,
        queue: Route,
        to_tier: i32,
        at: i64,
    },
}

/// What the store needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub amount_field: String,
    pub similar_fields: Vec<String>,
    pub similar_limit: usize,
    pub history_limit: usize,
}

/// The answer remembered for an Idempotency-Key.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub event_id: String,
    /// What was asked: a review action's name, or `signoff:confirm` / `signoff:refuse`.
    pub request: String,
    pub status: Status,
    pub at: i64,
}

/// Per-queue figures for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    pub open: usize,
    pub claimed: usize,
    pub awaiting_signoff: usize,
    pub oldest_routed_at: Option<i64>,
}

/// The view: open cases, the resolved history and idempotency receipts.
pub struct CaseStore {
    cases: DashMap<Arc<str>, Case>,
    history: Mutex<History>,
    receipts: DashMap<String, Receipt>,
    settings: StoreSettings,
}

impl CaseStore {
    pub fn new(settings: StoreSettings) -> Self {
        CaseStore {
            cases: DashMap::new(),
            history: Mutex::new(History::new(settings.history_limit, settings.similar_limit)),
            receipts: DashMap::new(),
            settings,
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // A panic while holding the lock cannot leave the history half-updated in a way that
        // matters more than losing it, so a poisoned lock is recovered.
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A routed record from a review topic.
    pub fn apply_routed(&self, r: RoutedRecord<'static, Event>, source: Position) -> Change {
        if !r.route.is_review() || self.history().contains(&r.event_id) {
            return Change::Nothing;
        }
        let amount = r.event.get(&self.settings.amount_field).and_then(amount_of).unwrap_or(0.0);
        let event_id: Arc<str> = Arc::from(r.event_id.as_ref());
        let routed = RoutedCase {
            queue: r.route,
            rule: r.rule.into_owned(),
            guardrail: r.guardrail,
            risk: r.risk_score,
            confidence: r.confidence,
            model_version: r.model_version.into_owned(),
            policy_version: r.policy_version.into_owned(),
            explanation: r.explanation.into_iter().map(|c| (c.feature.into_owned(), c.contribution)).collect(),
            routed_at: r.routed_at,
            event: r.event,
            amount: if amount.is_finite() { amount } else { 0.0 },
            source,
        };
        let mut case = self.cases.entry(event_id.clone()).or_default();
        if case.routed.is_some() {
            return Change::Nothing;
        }
        if case.tier == 0 {
            case.tier = 1;
            case.deadline = r.sla_deadline;
        }
        let (queue, at) = (routed.queue, routed.routed_at);
        case.routed = Some(Arc::new(routed));
        Change::Opened { event_id, queue, at }
    }

    /// An escalation record: the case's tier and deadline (or hold).
    pub fn apply_escalation(&self, e: &EscalationRecord<'_>) -> Change {
        if self.history().contains(&e.event_id) {
            return Change::Nothing;
        }
        let event_id: Arc<str> = Arc::from(e.event_id.as_ref());
        let mut case = self.cases.entry(event_id.clone()).or_default();
        // Records of one event are on one partition, in order; a replayed older record never
        // lowers the tier.
        if e.to_tier < case.tier || (e.to_tier == case.tier && !e.held) {
            return Change::Nothing;
        }
        let raised = e.to_tier > case.tier.max(1);
        case.tier = e.to_tier;
        case.held = e.held;
        case.deadline = if e.held { None } else { e.deadline };
        if raised {
            Change::Escalated { event_id, queue: e.queue, to_tier: e.to_tier, at: e.at }
        } else {
            Change::Nothing
        }
    }

    /// A resolved record: the case closes and joins the history.
    pub fn apply_resolved(&self, r: ResolvedEvent<'static, Event>) {
        self.cases.remove(r.event_id.as_ref());
        let keys = self.similarity_keys(&r.event);
        self.history().insert(Disposition::from_resolved(r), keys);
    }

    /// A decision record (this gateway's own, read back, or any other client's).
    pub fn apply_decision(&self, d: &ReviewDecision<'_>) {
        if let Some(id) = &d.decision_id {
            let request =
                if d.second_signoff.is_some() { "signoff:confirm".to_owned() } else { d.action.as_str().into() };
            let status = Status::Submitted;
            self.receipts.entry(id.to_string()).or_insert_with(|| Receipt {
                event_id: d.event_id.to_string(),
                request,
                status,
                at: d.decided_at,
            });
        }
        if let Some(mut case) = self.cases.get_mut(d.event_id.as_ref()) {
            match d.action {
                ReviewAction::RequestInfo => case.info_requested = true,
                ReviewAction::Approve | ReviewAction::Reject if case.submitted.is_none() => {
                    case.submitted = Some(Submitted {
                        decision_id: d.decision_id.as_deref().unwrap_or_default().to_owned(),
                        action: d.action,
                        reviewer_id: d.reviewer_id.to_string(),
                        at: d.decided_at,
                    });
                }
                _ => {}
            }
        }
    }

    /// A case-state record (or a tombstone, `None`): applied when newer than what is known.
    pub fn apply_gate(&self, event_id: &str, gate: Option<CaseGate<'static>>) {
        match gate {
            None => {
                if let Some(mut case) = self.cases.get_mut(event_id) {
                    case.gate.claim = None;
                    case.gate.signoff = None;
                }
            }
            Some(g) => {
                if self.history().contains(event_id) {
                    return;
                }
                let mut case = self.cases.entry(Arc::from(event_id)).or_default();
                if g.revision > case.gate.revision {
                    case.gate = Gate { revision: g.revision, claim: g.claim, signoff: g.signoff };
                }
            }
        }
    }

    /// The lock that serialises reviewer actions on a case (`None` for an unknown case).
    pub fn lock(&self, event_id: &str) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.cases.get(event_id).filter(|c| c.routed.is_some()).map(|c| c.lock.clone())
    }

    /// Marks a final decision as sent (after its record is written).
    pub fn mark_submitted(&self, event_id: &str, submitted: Submitted) {
        if let Some(mut case) = self.cases.get_mut(event_id) {
            case.submitted = Some(submitted);
        }
    }

    /// Remembers the answer to an Idempotency-Key.
    pub fn remember(&self, decision_id: &str, receipt: Receipt) {
        self.receipts.insert(decision_id.to_owned(), receipt);
    }

    /// The answer given to an Idempotency-Key, if any.
    pub fn receipt(&self, decision_id: &str) -> Option<Receipt> {
        self.receipts.get(decision_id).map(|r| r.clone())
    }

    /// Forgets receipts older than `before` (ms since the epoch).
    pub fn expire_receipts(&self, before: i64) {
        self.receipts.retain(|_, r| r.at >= before);
    }

    /// One case, if it is known and open.
    pub fn case(&self, event_id: &str) -> Option<CaseView> {
        self.cases.get(event_id).and_then(|c| view(c.key(), c.value()))
    }

    /// How a closed case was resolved, if it is in the history.
    pub fn disposition(&self, event_id: &str) -> Option<Disposition> {
        self.history().get(event_id).cloned()
    }

    /// The cases of `queues` waiting for a reviewer (open or awaiting sign-off), by priority:
    /// sync review before async review, then expected impact (amount × risk), then age.
    pub fn queue(&self, queues: &[Route]) -> Vec<CaseView> {
        let mut cases: Vec<CaseView> = self
            .cases
            .iter()
            .filter_map(|c| view(c.key(), c.value()))
            .filter(|v| queues.contains(&v.routed.queue) && v.status() != Status::Submitted)
            .collect();
        let rank = |q: Route| u8::from(q != Route::SyncReview);
        cases.sort_by(|a, b| {
            rank(a.routed.queue)
                .cmp(&rank(b.routed.queue))
                .then(b.impact().total_cmp(&a.impact()))
                .then(a.routed.routed_at.cmp(&b.routed.routed_at))
                .then(a.event_id.cmp(&b.event_id))
        });
        cases
    }

    /// Recently resolved cases sharing a similarity field's value with `case`.
    pub fn similar(&self, case: &CaseView) -> Vec<SimilarCase> {
        let keys = self.similarity_keys(&case.routed.event);
        self.history().similar(&keys, &case.event_id)
    }

    /// Figures per review queue at `now`.
    pub fn stats(&self, now: i64) -> [(Route, QueueStats); 2] {
        let mut out = [(Route::SyncReview, QueueStats::default()), (Route::AsyncReview, QueueStats::default())];
        for c in self.cases.iter() {
            let Some(v) = view(c.key(), c.value()) else { continue };
            let Some((_, s)) = out.iter_mut().find(|(q, _)| *q == v.routed.queue) else { continue };
            match v.status() {
                Status::Submitted => continue,
                Status::AwaitingSignoff => s.awaiting_signoff += 1,
                Status::Open => {}
            }
            s.open += 1;
            s.claimed += usize::from(v.gate.live_claim(now).is_some());
            s.oldest_routed_at = Some(s.oldest_routed_at.map_or(v.routed.routed_at, |o| o.min(v.routed.routed_at)));
        }
        out
    }

    fn similarity_keys(&self, event: &Event) -> Vec<(String, String)> {
        self.settings
            .similar_fields
            .iter()
            .filter_map(|f| {
                let value = match event.get(f)? {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => return None,
                    other => other.to_string(),
                };
                Some((f.clone(), value))
            })
            .collect()
    }
}

fn view(event_id: &Arc<str>, c: &Case) -> Option<CaseView> {
    Some(CaseView {
        event_id: event_id.clone(),
        routed: c.routed.clone()?,
        tier: c.tier.max(1),
        deadline: c.deadline,
        held: c.held,
        info_requested: c.info_requested,
        submitted: c.submitted.clone(),
        gate: c.gate.clone(),
    })
}

#[cfg(test)]
mod tests;
