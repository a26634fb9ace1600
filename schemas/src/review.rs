//! Records of the review loop: the pending-review changelog, resolved outcomes and escalations.

use crate::decision::ReviewAction;
use crate::route::Route;
use crate::routed::{AvroBytes, EventFormat};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The outcome of a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewOutcome {
    Approved,
    Rejected,
}

impl ReviewOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewOutcome::Approved => "approved",
            ReviewOutcome::Rejected => "rejected",
        }
    }
}

/// Whether a changelog entry is a pending review or the marker of a resolved one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    Pending,
    Resolved,
}

/// The value on `tollgate.pending-changelog` (always Avro: an internal, compacted topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingChange<'a> {
    pub event_id: Cow<'a, str>,
    pub state: ChangeState,
    pub queue: Route,
    /// Increases with every change of this review; a restore keeps the highest.
    pub revision: i32,
    pub tier: i32,
    pub held: bool,
    pub info_requested: bool,
    pub post_verify: bool,
    pub risk_score: f64,
    pub confidence: f64,
    pub routed_at: i64,
    pub deadline: i64,
    pub policy_version: Cow<'a, str>,
    pub model_version: Cow<'a, str>,
    pub rule: Cow<'a, str>,
    /// Fingerprints of the decisions applied.
    pub applied: Vec<Cow<'a, str>>,
    pub resolved_at: Option<i64>,
    pub event_format: EventFormat,
    /// The original event (empty once resolved).
    pub event: AvroBytes<'a>,
}

/// The value on `tollgate.resolved`. `E` is the original event, as in [`crate::RoutedRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "E: Deserialize<'de>"))]
pub struct ResolvedEvent<'a, E> {
    pub event_id: Cow<'a, str>,
    pub queue: Route,
    pub rule: Cow<'a, str>,
    pub recommendation: ReviewOutcome,
    /// The reviewer's action; `None` for a timeout fallback.
    pub action: Option<ReviewAction>,
    pub outcome: ReviewOutcome,
    /// Reviewer id, or `policy_timeout`.
    pub actor: Cow<'a, str>,
    pub actor_role: Option<Cow<'a, str>>,
    pub rationale: Cow<'a, str>,
    pub second_signoff: Option<Cow<'a, str>>,
    pub overridden: bool,
    pub review_latency_ms: i64,
    pub sla_met: bool,
    pub tier: i32,
    pub decided_at: i64,
    pub rollback: bool,
    pub risk_score: f64,
    pub confidence: f64,
    pub policy_version: Cow<'a, str>,
    pub model_version: Cow<'a, str>,
    pub event_format: EventFormat,
    pub event: E,
}

impl<'a, E> ResolvedEvent<'a, E> {
    /// The same record with another representation of the event.
    pub fn with_event<F>(self, event: F) -> ResolvedEvent<'a, F> {
        ResolvedEvent {
            event_id: self.event_id,
            queue: self.queue,
            rule: self.rule,
            recommendation: self.recommendation,
            action: self.action,
            outcome: self.outcome,
            actor: self.actor,
            actor_role: self.actor_role,
            rationale: self.rationale,
            second_signoff: self.second_signoff,
            overridden: self.overridden,
            review_latency_ms: self.review_latency_ms,
            sla_met: self.sla_met,
            tier: self.tier,
            decided_at: self.decided_at,
            rollback: self.rollback,
            risk_score: self.risk_score,
            confidence: self.confidence,
            policy_version: self.policy_version,
            model_version: self.model_version,
            event_format: self.event_format,
            event,
        }
    }
}

/// The value on `tollgate.escalations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRecord<'a> {
    pub event_id: Cow<'a, str>,
    pub queue: Route,
    pub from_tier: i32,
    /// Equal to `from_tier` when every tier ran out and the case is held.
    pub to_tier: i32,
    pub age_ms: i64,
    /// Reviewer id, or `policy_timeout`.
    pub actor: Cow<'a, str>,
    pub held: bool,
    pub at: i64,
    /// When the new tier's time runs out (ms since the epoch); `None` when the case is held.
    #[serde(default)]
    pub deadline: Option<i64>,
}
