//! The review decision: what a reviewer decided about an event waiting in review.

use crate::audit::borrowed_opt;
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
    /// Every action, in declaration order: `action as usize` is its place here.
    pub const ALL: [ReviewAction; 4] =
        [ReviewAction::Approve, ReviewAction::Reject, ReviewAction::Escalate, ReviewAction::RequestInfo];

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
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub decision_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub reviewer_id: Cow<'a, str>,
    #[serde(borrow)]
    pub reviewer_role: Cow<'a, str>,
    pub action: ReviewAction,
    #[serde(borrow, default)]
    pub rationale: Cow<'a, str>,
    /// Milliseconds since the Unix epoch.
    pub decided_at: i64,
    /// Reviewer id of the second sign-off, for high-impact cases.
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    pub second_signoff: Option<Cow<'a, str>>,
}

impl ReviewDecision<'_> {
    /// The decision with every field owned (no longer borrowing what it was read from).
    pub fn into_owned(self) -> ReviewDecision<'static> {
        fn own(text: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(text.into_owned())
        }
        ReviewDecision {
            decision_id: self.decision_id.map(own),
            event_id: own(self.event_id),
            reviewer_id: own(self.reviewer_id),
            reviewer_role: own(self.reviewer_role),
            action: self.action,
            rationale: own(self.rationale),
            decided_at: self.decided_at,
            second_signoff: self.second_signoff.map(own),
        }
    }

    /// What makes two deliveries of a decision the same decision.
    pub fn fingerprint(&self) -> String {
        // Laid out piece by piece: `format!` costs the review join about as much as applying
        // the decision.
        let mut at = itoa::Buffer::new();
        let parts: [&str; 5] = match &self.decision_id {
            Some(id) => ["id:", id, "", "", ""],
            None => [&self.reviewer_id, "|", self.action.as_str(), "|", at.format(self.decided_at)],
        };
        parts.concat()
    }
}
