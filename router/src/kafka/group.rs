//! A consumer's membership of its consumer group, as the router reports it.
//!
//! A routing loop is ready while its group has given it an assignment (an empty one counts:
//! more loops than partitions is a settled group), from the assignment to a revocation that
//! leaves it nothing (every eager one; an incremental one may leave some partitions).
//! So `/readyz` and `tollgate_ready` say 0 while a loop is still joining, rebalancing or
//! leaving, which is what the "router not ready" alert is for.
//!
//! librdkafka logs nothing while a join or rebalance waits (on members that do not rejoin, or
//! on a coordinator that does not answer), and the consumer reads nothing meanwhile. Its
//! periodic statistics say where the group's state machine stands; a consumer whose group has
//! not settled for [`UNSETTLED_WARNING`] warns once with that state, and again when it settles.

use crate::config::ConsumerSettings;
use crate::telemetry::Telemetry;
use rdkafka::statistics::{ConsumerGroup, Statistics};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a consumer's group may stay unsettled before the router warns. A join takes
/// seconds; a rebalance waits for every member to rejoin, up to the members'
/// `max.poll.interval.ms` (5 minutes by default) for one that does not.
pub const UNSETTLED_WARNING: Duration = Duration::from_secs(60);

/// Which of the router's consumers (the label of its metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    /// A routing loop's consumer of the input topic: counts towards readiness.
    Routing,
    /// The review join's consumer of decisions and the pending-review changelog.
    ReviewJoin,
    /// The audit chainer's consumer of the audit intake.
    AuditChain,
}

impl Member {
    pub const ALL: [Member; 3] = [Member::Routing, Member::ReviewJoin, Member::AuditChain];

    pub fn as_str(self) -> &'static str {
        match self {
            Member::Routing => "routing",
            Member::ReviewJoin => "review_join",
            Member::AuditChain => "audit_chain",
        }
    }

    /// This consumer's own librdkafka settings in `kafka.consumers`.
    pub fn settings(self, consumers: &ConsumerSettings) -> &BTreeMap<String, String> {
        match self {
            Member::Routing => &consumers.routing,
            Member::ReviewJoin => &consumers.review_join,
            Member::AuditChain => &consumers.audit_chain,
        }
    }

    /// As [`Member::settings`], to change them.
    pub fn settings_mut(self, consumers: &mut ConsumerSettings) -> &mut BTreeMap<String, String> {
        match self {
            Member::Routing => &mut consumers.routing,
            Member::ReviewJoin => &mut consumers.review_join,
            Member::AuditChain => &mut consumers.audit_chain,
        }
    }
}

impl std::str::FromStr for Member {
    type Err = String;

    /// A member by its name in `kafka.consumers` (`routing`, `review_join`, `audit_chain`).
    fn from_str(name: &str) -> Result<Member, String> {
        Member::ALL.into_iter().find(|m| m.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = Member::ALL.iter().map(|m| m.as_str()).collect();
            format!("no consumer `{name}`: one of {}", names.join(", "))
        })
    }
}

/// One consumer's membership: whether it holds an assignment, and since when its group has
/// been unsettled.
#[derive(Debug)]
pub struct Membership {
    pub member: Member,
    assigned: AtomicBool,
    unsettled: Mutex<Unsettled>,
}

#[derive(Debug, Default)]
struct Unsettled {
    since: Option<Instant>,
    warned: bool,
}

/// What a statistics report changed about the group, to be reported.
#[derive(Debug, PartialEq, Eq)]
pub enum GroupChange {
    /// Nothing to report.
    Quiet,
    /// Unsettled for this long (reported once per episode, at [`UNSETTLED_WARNING`]).
    Unsettled(Duration),
    /// Settled after an episode that was reported, this long after it began.
    Settled(Duration),
}

impl Membership {
    pub fn new(member: Member) -> Self {
        Membership { member, assigned: AtomicBool::new(false), unsettled: Mutex::default() }
    }

    /// The group assigned partitions (possibly none): true when the consumer held no
    /// assignment before.
    pub fn assign(&self) -> bool {
        !self.assigned.swap(true, Ordering::AcqRel)
    }

    /// The assignment was revoked, or the consumer leaves: true when it held one.
    pub fn revoke(&self) -> bool {
        self.assigned.swap(false, Ordering::AcqRel)
    }

    /// Takes a statistics report of the consumer's client and reports what it changed about
    /// the group.
    pub fn report(&self, statistics: &Statistics, telemetry: &Telemetry) {
        let Some(group) = &statistics.cgrp else { return };
        match self.observe(group, Instant::now()) {
            GroupChange::Quiet => {}
            GroupChange::Unsettled(waited) => telemetry.group_unsettled(self.member, waited, group),
            GroupChange::Settled(waited) => telemetry.group_settled(self.member, waited, group.assignment_size),
        }
    }

    /// Takes librdkafka's periodic view of the group (`cgrp` of its statistics) at `now`.
    pub fn observe(&self, group: &ConsumerGroup, now: Instant) -> GroupChange {
        let settled = group.state == "up" && group.join_state == "steady";
        let mut u = self.unsettled.lock().unwrap_or_else(PoisonError::into_inner);
        if settled {
            let episode = u.since.take();
            let warned = std::mem::take(&mut u.warned);
            return match episode {
                Some(since) if warned => GroupChange::Settled(now.saturating_duration_since(since)),
                _ => GroupChange::Quiet,
            };
        }
        let since = *u.since.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if !u.warned && waited >= UNSETTLED_WARNING {
            u.warned = true;
            return GroupChange::Unsettled(waited);
        }
        GroupChange::Quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(state: &str, join_state: &str) -> ConsumerGroup {
        ConsumerGroup { state: state.into(), join_state: join_state.into(), ..ConsumerGroup::default() }
    }

    #[test]
    fn an_assignment_counts_once_until_it_is_revoked() {
        let m = Membership::new(Member::Routing);
        assert!(!m.revoke(), "nothing to revoke before an assignment");
        assert!(m.assign());
        assert!(!m.assign(), "a second assignment without a revocation changes nothing");
        assert!(m.revoke());
        assert!(!m.revoke(), "leaving after a revocation changes nothing");
        assert!(m.assign());
    }

    #[test]
    fn an_unsettled_group_is_reported_once_after_the_warning_time_and_again_when_it_settles() {
        let m = Membership::new(Member::ReviewJoin);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(m.observe(&group("up", "steady"), at(0)), GroupChange::Quiet);
        // A short rebalance is not reported, and its time does not carry over.
        assert_eq!(m.observe(&group("up", "wait-sync"), at(5)), GroupChange::Quiet);
        assert_eq!(m.observe(&group("up", "steady"), at(10)), GroupChange::Quiet);
        assert_eq!(m.observe(&group("wait-coord", "init"), at(15)), GroupChange::Quiet);
        assert_eq!(m.observe(&group("up", "wait-join"), at(70)), GroupChange::Quiet);
        assert_eq!(m.observe(&group("up", "wait-join"), at(75)), GroupChange::Unsettled(Duration::from_secs(60)));
        assert_eq!(m.observe(&group("up", "wait-join"), at(200)), GroupChange::Quiet, "warned once");
        assert_eq!(m.observe(&group("up", "steady"), at(205)), GroupChange::Settled(Duration::from_secs(190)));
        assert_eq!(m.observe(&group("up", "steady"), at(210)), GroupChange::Quiet);
        // A new episode starts from its own beginning.
        assert_eq!(m.observe(&group("up", "wait-sync"), at(300)), GroupChange::Quiet);
        assert_eq!(m.observe(&group("up", "wait-sync"), at(359)), GroupChange::Quiet);
        assert_eq!(m.observe(&group("up", "wait-sync"), at(360)), GroupChange::Unsettled(Duration::from_secs(60)));
    }
}
