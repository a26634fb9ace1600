//! The review decision: what a reviewer decided about an event waiting in review.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// What a reviewer can do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    /// Let the event proceed (final).
    Approve,
    /// Stop the event (final).
    Reject,
    /// Hand the case to the next escalation tier (not final).
    Escalate,
    /// Ask for more information; the case stays open (not final).
    RequestInfo,
}

impl ReviewAction {
    /// The action's name in records and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewAction::Approve => "approve",
            ReviewAction::Reject => "reject",
            ReviewAction::Escalate => "escalate",
            ReviewAction::RequestInfo => "request_info",
        }
    }

    /// True for actions that end the review.
    pub const fn is_final(self) -> bool {
        matches!(self, ReviewAction::Approve | ReviewAction::Reject)
    }
}

/// The record on `tollgate.review-decisions`, keyed by event id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewDecision<'a> {
    /// Idempotency key; when absent, reviewer, action and decision time identify the decision.
    pub decision_id: Option<Cow<'a, str>>,
    pub event_id: Cow<'a, str>,
    pub reviewer_id: Cow<'a, str>,
    pub reviewer_role: Cow<'a, str>,
    pub action: ReviewAction,
    #[serde(default)]
    pub rationale: Cow<'a, str>,
    /// Milliseconds since the Unix epoch.
    pub decided_at: i64,
    /// Reviewer id of the second sign-off, for high-impact cases.
    #[serde(default)]
    pub second_signoff: Option<Cow<'a, str>>,
}

impl ReviewDecision<'_> {
    /// What makes two deliveries of a decision the same decision.
    pub fn fingerprint(&self) -> String {
        match &self.decision_id {
            Some(id) => format!("id:{id}"),
            None => format!("{}|{}|{}", self.reviewer_id, self.action.as_str(), self.decided_at),
        }
    }
}
