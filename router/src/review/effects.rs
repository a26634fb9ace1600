//! What the review state asks the outside world to do.

use super::state::Pending;
use super::Outcome;
use std::sync::Arc;
use tollgate_schemas::{ReviewAction, ReviewDecision, Route};

/// Who decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Actor {
    /// A reviewer, by id and role.
    Reviewer { id: Arc<str>, role: Arc<str> },
    /// The policy, because a deadline passed.
    PolicyTimeout,
}

/// A review that ended: the event may continue on the human's (or the timeout's) choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub event_id: Arc<str>,
    pub queue: Route,
    pub outcome: Outcome,
    /// What the model recommended (from the risk score and the recommendation cut).
    pub recommendation: Outcome,
    /// The human outcome differs from the model's recommendation.
    pub overridden: bool,
    pub actor: Actor,
    /// The reviewer's action, or `None` for a timeout fallback.
    pub action: Option<ReviewAction>,
    pub rationale: Arc<str>,
    pub second_signoff: Option<Arc<str>>,
    /// From routing to decision.
    pub latency_ms: i64,
    /// Decided within the queue's SLA (the end of tier 1).
    pub sla_met: bool,
    pub tier: u8,
    pub decided_at: i64,
    /// A post-verify event was already committed: a reject must be compensated.
    pub rollback: bool,
    /// The state as it was when the review ended.
    pub pending: Pending,
    /// Fingerprints of every decision applied to this review (for the resolved marker).
    pub fingerprints: Arc<[Arc<str>]>,
}

/// A case moved to a higher tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub event_id: Arc<str>,
    pub queue: Route,
    pub from_tier: u8,
    pub to_tier: u8,
    /// Time since the event was routed.
    pub age_ms: i64,
    /// The reviewer who escalated, or the policy when a tier's time ran out.
    pub actor: Actor,
    pub at: i64,
    /// The state after the escalation (for the changelog).
    pub pending: Pending,
}

/// Why a decision could not be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnjoinedReason {
    /// No event with this id arrived within the grace period.
    UnknownEvent,
    /// The event was already resolved by a different decision.
    AlreadyResolved,
}

impl UnjoinedReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            UnjoinedReason::UnknownEvent => "unknown_event",
            UnjoinedReason::AlreadyResolved => "already_resolved",
        }
    }
}

/// One thing the review state asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish the outcome (and a rollback when `rollback`), audit it, mark it resolved in the
    /// changelog.
    Resolved(Box<Resolution>),
    /// Publish an escalation record, audit it, update the changelog.
    Escalated(Box<Escalation>),
    /// A reviewer asked for more information: audit it, update the changelog.
    InfoRequested { event_id: Arc<str>, actor: Actor, rationale: Arc<str>, at: i64, pending: Pending },
    /// Every tier ran out and the fallback is `hold`: audit it, update the changelog.
    Held { event_id: Arc<str>, queue: Route, age_ms: i64, at: i64, pending: Pending },
    /// A decision that cannot be joined: dead-letter it with the reason.
    Unjoined { decision: Box<ReviewDecision<'static>>, reason: UnjoinedReason },
    /// A repeated delivery of a decision already applied: nothing to do but count it.
    Duplicate { event_id: Arc<str> },
    /// The resolved marker of an event is older than the retention: delete it from the changelog.
    Forget { event_id: Arc<str>, partition: i32 },
}
