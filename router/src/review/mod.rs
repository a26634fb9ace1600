//! The review loop's state: events waiting for a human, joined with reviewers' decisions, with
//! SLA tiers, escalation and timeout fallbacks.
//!
//! This module is pure: every operation takes the current time and returns [`Effect`]s, which
//! the Kafka layer turns into records (`tollgate.resolved`, `tollgate.escalations`,
//! `tollgate.rollbacks`, dead letters, audit records and changelog entries). Nothing here
//! sleeps, reads a clock or talks to Kafka, so the whole state machine is tested directly.

mod effects;
mod state;

pub use effects::{Actor, Effect, Escalation, Resolution, UnjoinedReason};
pub(crate) use state::IdHasher;
pub use state::{Pending, PendingInput, Provenance, QueueStats, ReviewSettings, ReviewState, Tick};

/// The outcome of a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Approved,
    Rejected,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Rejected => "rejected",
        }
    }
}

#[cfg(test)]
mod tests;
