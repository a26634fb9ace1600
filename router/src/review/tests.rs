//! Review-state tests: joins, idempotency, the early-decision race, SLA tiers and fallbacks,
//! post-verify rollbacks and partition hand-over, all in explicit time.

use super::*;
use crate::config::{Fallback, ReviewConfig};
use std::sync::Arc;
use tollgate_schemas::{ReviewAction, ReviewDecision, Route};

const MIN: i64 = 60_000;
const T0: i64 = 1_790_000_000_000;

fn settings(sync_fallback: Fallback, post_verify: bool) -> ReviewSettings {
    let mut c = ReviewConfig::default();
    c.sync_review.fallback = sync_fallback;
    c.async_review.post_verify = post_verify;
    ReviewSettings::from_config(&c)
}

fn state() -> ReviewState {
    ReviewState::new(settings(Fallback::Hold, false))
}

fn input(id: &str, queue: Route, risk: f64) -> PendingInput<'_> {
    PendingInput {
        event_id: id,
        queue,
        risk,
        confidence: 0.7,
        routed_at: T0,
        partition: 1,
        event_offset: 7,
        post_verify: false,
        policy_version: "p1",
        model_version: "m1",
        rule: "sync-review",
    }
}

fn decision(id: &str, action: ReviewAction, at: i64) -> ReviewDecision<'static> {
    ReviewDecision {
        decision_id: None,
        event_id: id.to_owned().into(),
        reviewer_id: "ana".into(),
        reviewer_role: "fraud_analyst".into(),
        action,
        rationale: "checked with the card holder".into(),
        decided_at: at,
        second_signoff: None,
    }
}

fn resolution(effects: &[Effect]) -> &Resolution {
    match effects {
        [Effect::Resolved(r)] => r,
        other => panic!("expected one resolution, got {other:?}"),
    }
}

#[test]
fn a_decision_resolves_its_pending_event() {
    let s = state();
    assert!(s.admit(input("e1", Route::SyncReview, 0.93), T0).is_empty());
    let p = s.get("e1").unwrap();
    assert_eq!((p.tier, p.deadline), (1, T0 + 30 * MIN));
    let effects = s.decide(decision("e1", ReviewAction::Approve, T0 + 12 * MIN), 1, T0 + 12 * MIN);
    let r = resolution(&effects);
    assert_eq!(r.outcome, Outcome::Approved);
    assert_eq!(r.recommendation, Outcome::Rejected, "risk 0.93 is above the 0.5 cut");
    assert!(r.overridden);
    assert_eq!(r.latency_ms, 12 * MIN);
    assert!(r.sla_met);
    assert_eq!(r.tier, 1);
    assert!(!r.rollback);
    assert_eq!(r.actor, Actor::Reviewer { id: Arc::from("ana"), role: Arc::from("fraud_analyst") });
    assert_eq!(&*r.pending.provenance.policy_version, "p1");
    assert!(s.get("e1").is_none());
    assert_eq!(s.queue_stats(Route::SyncReview, T0).pending, 0);
}

#[test]
fn agreement_with_the_model_is_not_an_override_and_late_decisions_breach_the_sla() {
    let s = state();
    s.admit(input("e2", Route::AsyncReview, 0.7), T0);
    let late = T0 + 5 * 60 * MIN;
    let r = s.decide(decision("e2", ReviewAction::Reject, late), 1, late);
    let r = resolution(&r);
    assert_eq!((r.outcome, r.recommendation, r.overridden), (Outcome::Rejected, Outcome::Rejected, false));
    assert!(!r.sla_met, "async SLA is 4 h; decided after 5 h");
}

#[test]
fn a_repeated_decision_is_idempotent_and_a_conflicting_one_is_refused() {
    let s = state();
    s.admit(input("e3", Route::SyncReview, 0.2), T0);
    let d = decision("e3", ReviewAction::Reject, T0 + MIN);
    assert_eq!(resolution(&s.decide(d.clone(), 1, T0 + MIN)).outcome, Outcome::Rejected);
    assert!(matches!(&s.decide(d, 1, T0 + 2 * MIN)[..], [Effect::Duplicate { .. }]));
    let other = decision("e3", ReviewAction::Approve, T0 + 3 * MIN);
    match &s.decide(other, 1, T0 + 3 * MIN)[..] {
        [Effect::Unjoined { reason, .. }] => assert_eq!(*reason, UnjoinedReason::AlreadyResolved),
        other => panic!("{other:?}"),
    }
    // Re-admitting the event (a replayed routing) does not reopen it.
    assert!(s.admit(input("e3", Route::SyncReview, 0.2), T0 + 4 * MIN).is_empty());
    assert!(s.get("e3").is_none());
}

#[test]
fn a_decision_that_arrives_before_its_event_waits_for_it() {
    let s = state();
    assert!(s.decide(decision("e4", ReviewAction::Approve, T0 + MIN), 1, T0 + MIN).is_empty());
    assert_eq!(s.parked_count(), 1);
    assert!(s.tick(T0 + MIN + 30_000).effects.is_empty(), "still within the grace period");
    let effects = s.admit(input("e4", Route::SyncReview, 0.4), T0 + MIN + 40_000);
    assert_eq!(resolution(&effects).outcome, Outcome::Approved);
    assert_eq!(s.parked_count(), 0);
}

#[test]
fn a_decision_for_an_event_that_never_comes_is_dead_lettered_after_the_grace() {
    let s = state();
    s.decide(decision("ghost", ReviewAction::Reject, T0), 2, T0);
    assert!(s.tick(T0 + 59_999).effects.is_empty());
    match &s.tick(T0 + 60_000).effects[..] {
        [Effect::Unjoined { reason, decision }] => {
            assert_eq!(*reason, UnjoinedReason::UnknownEvent);
            assert_eq!(decision.event_id, "ghost");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.parked_count(), 0);
}

fn escalations(effects: &[Effect]) -> Vec<(u8, u8, bool)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Escalated(x) => Some((x.from_tier, x.to_tier, x.actor == Actor::PolicyTimeout)),
            _ => None,
        })
        .collect()
}

#[test]
fn sync_review_escalates_through_its_tiers_then_holds() {
    let s = state();
    s.admit(input("e5", Route::SyncReview, 0.95), T0);
    assert!(s.tick(T0 + 30 * MIN - 1).effects.is_empty());
    assert_eq!(escalations(&s.tick(T0 + 30 * MIN).effects), [(1, 2, true)]);
    assert_eq!(s.get("e5").unwrap().deadline, T0 + 90 * MIN);
    assert_eq!(escalations(&s.tick(T0 + 90 * MIN).effects), [(2, 3, true)], "tier 3: page");
    match &s.tick(T0 + 120 * MIN).effects[..] {
        [Effect::Held { age_ms, queue, .. }] => assert_eq!((*age_ms, *queue), (120 * MIN, Route::SyncReview)),
        other => panic!("{other:?}"),
    }
    assert!(s.tick(T0 + 500 * MIN).effects.is_empty(), "held once, not again");
    assert!(s.get("e5").unwrap().held);
    assert_eq!(s.queue_stats(Route::SyncReview, T0 + 500 * MIN).held, 1, "the held gauge counts it");
    // A human can still decide a held case.
    let r = s.decide(decision("e5", ReviewAction::Reject, T0 + 501 * MIN), 1, T0 + 501 * MIN);
    assert_eq!((resolution(&r).tier, resolution(&r).sla_met), (3, false));
}

#[test]
fn the_reject_fallback_resolves_by_policy_timeout_catching_up_after_downtime() {
    let s = ReviewState::new(settings(Fallback::Reject, false));
    s.admit(input("e6", Route::SyncReview, 0.3), T0);
    // One tick long after every tier ran out: both escalations, then the fallback.
    let effects = s.tick(T0 + 10 * 60 * MIN).effects;
    assert_eq!(escalations(&effects), [(1, 2, true), (2, 3, true)]);
    let r = match effects.last() {
        Some(Effect::Resolved(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!((r.outcome, r.actor.clone(), r.action), (Outcome::Rejected, Actor::PolicyTimeout, None));
    assert!(!r.overridden, "a timeout is not a human override");
    assert!(r.rationale.contains("fallback rejected"));
    assert!(s.get("e6").is_none());
}

#[test]
fn reviewer_escalation_and_request_for_information() {
    let s = state();
    s.admit(input("e7", Route::SyncReview, 0.91), T0);
    let esc = decision("e7", ReviewAction::Escalate, T0 + 5 * MIN);
    let effects = s.decide(esc.clone(), 1, T0 + 5 * MIN);
    assert_eq!(escalations(&effects), [(1, 2, false)]);
    assert_eq!(s.get("e7").unwrap().deadline, T0 + 65 * MIN, "tier 2 has an hour from the escalation");
    assert!(matches!(&s.decide(esc, 1, T0 + 6 * MIN)[..], [Effect::Duplicate { .. }]), "redelivery");
    let info = decision("e7", ReviewAction::RequestInfo, T0 + 7 * MIN);
    assert!(matches!(&s.decide(info, 1, T0 + 7 * MIN)[..], [Effect::InfoRequested { .. }]));
    assert!(s.get("e7").unwrap().info_requested);
    let r = s.decide(decision("e7", ReviewAction::Approve, T0 + 8 * MIN), 1, T0 + 8 * MIN);
    assert_eq!(resolution(&r).tier, 2);
    // An earlier non-final decision redelivered after the resolution is a duplicate too.
    let esc_again = decision("e7", ReviewAction::Escalate, T0 + 5 * MIN);
    assert!(matches!(&s.decide(esc_again, 1, T0 + 9 * MIN)[..], [Effect::Duplicate { .. }]));
}

#[test]
fn a_rejected_post_verify_event_is_rolled_back() {
    let s = ReviewState::new(settings(Fallback::Hold, true));
    s.admit(PendingInput { post_verify: true, ..input("pv1", Route::AsyncReview, 0.7) }, T0);
    s.admit(PendingInput { post_verify: true, ..input("pv2", Route::AsyncReview, 0.7) }, T0);
    assert!(resolution(&s.decide(decision("pv1", ReviewAction::Reject, T0 + MIN), 1, T0 + MIN)).rollback);
    assert!(!resolution(&s.decide(decision("pv2", ReviewAction::Approve, T0 + MIN), 1, T0 + MIN)).rollback);
}

#[test]
fn revoking_a_partition_drops_only_its_state_and_restore_brings_it_back() {
    let s = state();
    s.admit(input("a", Route::SyncReview, 0.9), T0);
    let mut other = input("b", Route::AsyncReview, 0.9);
    other.partition = 2;
    s.admit(other, T0);
    let saved = s.get("b").unwrap();
    s.revoke(2);
    assert!(s.get("b").is_none());
    assert!(s.get("a").is_some());
    assert!(s.restore("b", saved.clone()));
    assert_eq!(s.get("b").unwrap(), saved);
    // An older or equal revision (e.g. the worker's own entry read back) changes nothing.
    let mut stale = saved.clone();
    stale.tier = 9;
    assert!(!s.restore("b", stale.clone()));
    stale.revision += 1;
    stale.event_offset = -1;
    assert!(s.restore("b", stale));
    assert_eq!((s.get("b").unwrap().tier, s.get("b").unwrap().event_offset), (9, 7), "the event's offset is kept");
    assert_eq!(
        s.queue_stats(Route::AsyncReview, T0 + 10 * MIN),
        QueueStats { pending: 1, held: 0, oldest_ms: 10 * MIN }
    );
}

#[test]
fn every_change_raises_the_revision() {
    let s = ReviewState::new(settings(Fallback::Hold, false));
    s.admit(input("r", Route::SyncReview, 0.9), T0);
    assert_eq!(s.get("r").unwrap().revision, 0);
    s.decide(decision("r", ReviewAction::RequestInfo, T0 + MIN), 1, T0 + MIN);
    s.tick(T0 + 30 * MIN);
    s.decide(decision("r", ReviewAction::Escalate, T0 + 31 * MIN), 1, T0 + 31 * MIN);
    assert_eq!(s.get("r").unwrap().revision, 3);
}

#[test]
fn a_final_decision_repeating_an_applied_id_is_a_duplicate_and_leaves_the_review_pending() {
    let s = state();
    s.admit(input("q", Route::SyncReview, 0.9), T0);
    let id = |action| ReviewDecision { decision_id: Some("d1".into()), ..decision("q", action, T0 + MIN) };
    assert!(matches!(&s.decide(id(ReviewAction::Escalate), 1, T0 + MIN)[..], [Effect::Escalated(_)]));
    // Same decision id, now as an approval: the id names a decision already applied.
    assert!(matches!(&s.decide(id(ReviewAction::Approve), 1, T0 + 2 * MIN)[..], [Effect::Duplicate { .. }]));
    let pending = s.get("q").expect("still pending");
    assert_eq!((pending.tier, pending.applied.len()), (2, 1));
    // A new decision still resolves it, with both fingerprints remembered.
    let r = resolution(&s.decide(decision("q", ReviewAction::Approve, T0 + 3 * MIN), 1, T0 + 3 * MIN)).clone();
    assert_eq!(r.fingerprints.len(), 2);
    assert!(s.get("q").is_none());
}

#[test]
fn a_restored_resolution_answers_waiting_decisions() {
    let s = state();
    let d = ReviewDecision { decision_id: Some("d9".into()), ..decision("z", ReviewAction::Approve, T0) };
    assert!(s.decide(d, 1, T0).is_empty(), "parked: the event is not known yet");
    let effects = s.restore_resolved("z", [Arc::from("id:d9")].into(), T0, 1);
    assert!(matches!(&effects[..], [Effect::Duplicate { .. }]), "{effects:?}");
}

#[test]
fn resolutions_are_forgotten_at_the_first_sweep_after_the_retention() {
    let s = state();
    s.admit(input("old", Route::SyncReview, 0.9), T0);
    s.decide(decision("old", ReviewAction::Approve, T0), 1, T0);
    let week = 7 * 24 * 60 * MIN;
    let forgotten = |effects: &[Effect]| effects.iter().any(|e| matches!(e, Effect::Forget { .. }));
    // This tick sweeps (the first one does); the next sweep is a minute later.
    assert!(!forgotten(&s.tick(T0 + week - 1).effects));
    assert!(!forgotten(&s.tick(T0 + week).effects), "past its time, but no sweep is due");
    match &s.tick(T0 + week - 1 + MIN).effects[..] {
        [Effect::Forget { event_id, partition }] => assert_eq!((&**event_id, *partition), ("old", 1)),
        other => panic!("{other:?}"),
    }
    assert!(!forgotten(&s.tick(T0 + week + 2 * MIN).effects), "forgotten once");
}

#[test]
fn a_tick_gathers_the_queue_figures_a_pass_of_their_own_finds() {
    let s = ReviewState::new(settings(Fallback::Reject, false));
    for (i, queue) in
        [Route::SyncReview, Route::AsyncReview, Route::SyncReview, Route::AsyncReview].into_iter().enumerate()
    {
        let id = format!("q{i}");
        s.admit(PendingInput { routed_at: T0 + i as i64 * MIN, ..input(&id, queue, 0.5) }, T0 + i as i64 * MIN);
    }
    s.decide(decision("q2", ReviewAction::Approve, T0 + 5 * MIN), 1, T0 + 5 * MIN);
    s.decide(decision("q3", ReviewAction::Escalate, T0 + 5 * MIN), 1, T0 + 5 * MIN);
    for at in [T0 + 6 * MIN, T0 + 45 * MIN, T0 + 10 * 60 * MIN] {
        let tick = s.tick(at);
        for (queue, stats) in tick.queues {
            assert_eq!(stats, s.queue_stats(queue, at), "{queue:?} at {}", at - T0);
        }
    }
    // The sync fallback (reject) resolved q0 by the last tick; it is no longer counted.
    assert_eq!(s.queue_stats(Route::SyncReview, T0 + 10 * 60 * MIN).pending, 0);
    assert_eq!(s.queue_stats(Route::AsyncReview, T0 + 10 * 60 * MIN).pending, 2);
}

#[test]
fn a_pending_entry_stays_small() {
    // Strings are shared (interned) across entries; the entry itself holds no payload.
    assert!(std::mem::size_of::<Pending>() <= 128, "{}", std::mem::size_of::<Pending>());
    let s = state();
    s.admit(input("x", Route::SyncReview, 0.9), T0);
    s.admit(input("y", Route::SyncReview, 0.9), T0);
    assert!(Arc::ptr_eq(&s.get("x").unwrap().provenance, &s.get("y").unwrap().provenance));
}

#[test]
fn admitting_returns_the_state_s_own_id_only_for_a_new_event() {
    let s = state();
    let (id, effects) = s.admit_keyed(input("k", Route::SyncReview, 0.9), T0);
    assert_eq!((id.as_deref(), effects.len()), (Some("k"), 0));
    assert!(s.admit_keyed(input("k", Route::SyncReview, 0.9), T0).0.is_none(), "pending already");
    s.decide(decision("k", ReviewAction::Approve, T0 + MIN), 1, T0 + MIN);
    assert!(s.admit_keyed(input("k", Route::SyncReview, 0.9), T0).0.is_none(), "resolved already");
}
