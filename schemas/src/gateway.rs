//! The reviewer gateway's own state of a case: who holds its claim, and a first sign-off that
//! waits for a second reviewer. Kept on a compacted topic so a restarted gateway rebuilds it.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A reviewer's lease on a case: until it expires, only they may decide it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim<'a> {
    pub reviewer_id: Cow<'a, str>,
    pub reviewer_role: Cow<'a, str>,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// The final action of a first sign-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignoffAction {
    Approve,
    Reject,
}

impl SignoffAction {
    /// The matching review action.
    pub const fn action(self) -> crate::ReviewAction {
        match self {
            SignoffAction::Approve => crate::ReviewAction::Approve,
            SignoffAction::Reject => crate::ReviewAction::Reject,
        }
    }
}

/// A high-impact decision by a first reviewer, waiting for a second one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignoff<'a> {
    /// The decision id the final decision record will carry.
    pub decision_id: Cow<'a, str>,
    pub reviewer_id: Cow<'a, str>,
    pub reviewer_role: Cow<'a, str>,
    pub action: SignoffAction,
    pub rationale: Cow<'a, str>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// The value on `tollgate.gateway-state`, keyed by event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseGate<'a> {
    pub event_id: Cow<'a, str>,
    pub revision: i64,
    pub claim: Option<Claim<'a>>,
    pub signoff: Option<PendingSignoff<'a>>,
}
