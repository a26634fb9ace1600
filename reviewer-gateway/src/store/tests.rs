use super::*;
use serde_json::json;
use std::borrow::Cow;
use tollgate_schemas::{EventFormat, ReviewOutcome};

fn settings(history_limit: usize) -> StoreSettings {
    StoreSettings {
        amount_field: "amount".into(),
        similar_fields: vec!["account_id".into(), "merchant_category".into()],
        similar_limit: 3,
        history_limit,
    }
}

fn event(id: &str, account: &str, amount: f64) -> Event {
    json!({"event_id": id, "account_id": account, "amount": amount, "merchant_category": "travel"})
        .as_object()
        .unwrap()
        .clone()
}

fn routed(id: &str, queue: Route, amount: f64, at: i64) -> RoutedRecord<'static, Event> {
    RoutedRecord {
        event_id: id.to_owned().into(),
        route: queue,
        rule: "r".into(),
        guardrail: false,
        risk_score: 0.8,
        confidence: 0.9,
        model_version: "m".into(),
        policy_version: "p".into(),
        explanation: vec![],
        routed_at: at,
        sla_deadline: Some(at + 100),
        event_format: EventFormat::Json,
        event: event(id, "acct-1", amount),
    }
}

fn resolved(id: &str, account: &str, at: i64) -> ResolvedEvent<'static, Event> {
    ResolvedEvent {
        event_id: id.to_owned().into(),
        queue: Route::SyncReview,
        rule: "r".into(),
        recommendation: ReviewOutcome::Rejected,
        action: Some(ReviewAction::Reject),
        outcome: ReviewOutcome::Rejected,
        actor: "ana".into(),
        actor_role: None,
        rationale: "".into(),
        second_signoff: None,
        overridden: false,
        review_latency_ms: 1,
        sla_met: true,
        tier: 1,
        decided_at: at,
        rollback: false,
        risk_score: 0.8,
        confidence: 0.9,
        policy_version: "p".into(),
        model_version: "m".into(),
        event_format: EventFormat::Json,
        event: event(id, account, 1.0),
    }
}

fn pos() -> Position {
    Position { topic: "t".into(), partition: 0, offset: 0 }
}

fn escalation(id: &str, from: i32, to: i32, held: bool) -> EscalationRecord<'static> {
    EscalationRecord {
        event_id: id.to_owned().into(),
        queue: Route::SyncReview,
        from_tier: from,
        to_tier: to,
        age_ms: 1,
        actor: "policy_timeout".into(),
        held,
        at: 50,
        deadline: (!held).then_some(500 * i64::from(to)),
    }
}

#[test]
fn records_apply_in_any_order_and_twice_without_effect() {
    let s = CaseStore::new(settings(10));
    // Escalation before the routed record: the tier is kept, the case appears once routed.
    assert_eq!(
        s.apply_escalation(&escalation("e1", 1, 2, false)),
        Change::Escalated { event_id: "e1".into(), queue: Route::SyncReview, to_tier: 2, at: 50 }
    );
    assert!(s.case("e1").is_none());
    assert!(matches!(s.apply_routed(routed("e1", Route::SyncReview, 10.0, 5), pos()), Change::Opened { .. }));
    assert_eq!(s.apply_routed(routed("e1", Route::SyncReview, 10.0, 5), pos()), Change::Nothing);
    let c = s.case("e1").unwrap();
    assert_eq!((c.tier, c.deadline), (2, Some(1000)));
    // A replayed older escalation never lowers the tier; a hold keeps it and drops the deadline.
    assert_eq!(s.apply_escalation(&escalation("e1", 1, 2, false)), Change::Nothing);
    s.apply_escalation(&escalation("e1", 2, 3, false));
    s.apply_escalation(&escalation("e1", 3, 3, true));
    let c = s.case("e1").unwrap();
    assert_eq!((c.tier, c.held, c.deadline), (3, true, None));
    // Resolution before the routed record: the case never opens.
    s.apply_resolved(resolved("e2", "acct-9", 7));
    assert_eq!(s.apply_routed(routed("e2", Route::SyncReview, 10.0, 5), pos()), Change::Nothing);
    assert!(s.case("e2").is_none());
    assert_eq!(s.disposition("e2").unwrap().outcome, ReviewOutcome::Rejected);
    // Non-review routes are not cases.
    assert_eq!(s.apply_routed(routed("e3", Route::AutoCommit, 10.0, 5), pos()), Change::Nothing);
}

#[test]
fn the_newest_case_state_wins_and_a_tombstone_clears_it() {
    let s = CaseStore::new(settings(10));
    s.apply_routed(routed("e1", Route::AsyncReview, 10.0, 5), pos());
    let gate = |revision, who: &str| CaseGate {
        event_id: "e1".into(),
        revision,
        claim: Some(Claim { reviewer_id: who.to_owned().into(), reviewer_role: "r".into(), expires_at: 1_000 }),
        signoff: None,
    };
    s.apply_gate("e1", Some(gate(2, "ben")));
    s.apply_gate("e1", Some(gate(1, "ana")));
    assert_eq!(s.case("e1").unwrap().gate.live_claim(10).unwrap().reviewer_id, "ben");
    assert!(s.case("e1").unwrap().gate.live_claim(1_000).is_none(), "expired at its deadline");
    s.apply_gate("e1", None);
    assert!(s.case("e1").unwrap().gate.claim.is_none());
}

#[test]
fn decisions_read_back_mark_cases_and_rebuild_receipts() {
    let s = CaseStore::new(settings(10));
    s.apply_routed(routed("e1", Route::AsyncReview, 10.0, 5), pos());
    s.apply_routed(routed("e2", Route::AsyncReview, 10.0, 5), pos());
    let decision = |id: &str, action, key: &str| ReviewDecision {
        decision_id: Some(Cow::Owned(key.to_owned())),
        event_id: Cow::Owned(id.to_owned()),
        reviewer_id: "ana".into(),
        reviewer_role: "fraud_analyst".into(),
        action,
        rationale: "".into(),
        decided_at: 9,
        second_signoff: None,
    };
    s.apply_decision(&decision("e1", ReviewAction::RequestInfo, "ana/k1"));
    s.apply_decision(&decision("e2", ReviewAction::Approve, "ana/k2"));
    assert!(s.case("e1").unwrap().info_requested);
    assert_eq!(s.case("e2").unwrap().status(), Status::Submitted);
    assert_eq!(s.receipt("ana/k2").unwrap().request, "approve");
    assert_eq!(s.queue(&[Route::AsyncReview]).len(), 1, "a submitted case leaves the queue");
    s.expire_receipts(10);
    assert!(s.receipt("ana/k1").is_none());
}

#[test]
fn similar_cases_are_the_most_recent_sharing_a_field_and_history_is_bounded() {
    let s = CaseStore::new(settings(4));
    s.apply_resolved(resolved("old-1", "acct-1", 1));
    s.apply_resolved(resolved("old-2", "acct-2", 2));
    s.apply_resolved(resolved("old-3", "acct-1", 3));
    s.apply_routed(routed("now", Route::SyncReview, 10.0, 5), pos());
    let case = s.case("now").unwrap();
    let similar: Vec<(String, String)> =
        s.similar(&case).into_iter().map(|c| (c.disposition.event_id.to_string(), c.matched_on)).collect();
    // All share the category; the account matches are found first, newest first overall.
    assert_eq!(
        similar,
        [
            ("old-3".to_owned(), "account_id".to_owned()),
            ("old-2".to_owned(), "merchant_category".to_owned()),
            ("old-1".to_owned(), "account_id".to_owned())
        ]
    );
    for i in 4..10 {
        s.apply_resolved(resolved(&format!("old-{i}"), "acct-7", i));
    }
    assert!(s.disposition("old-1").is_none(), "the oldest were forgotten");
    assert!(s.disposition("old-9").is_some());
    let ids: Vec<String> = s.similar(&case).into_iter().map(|c| c.disposition.event_id.to_string()).collect();
    assert_eq!(ids, ["old-9", "old-8", "old-7"]);
}

#[test]
fn an_amount_written_as_decimal_text_counts_as_the_number() {
    let s = CaseStore::new(settings(10));
    for (id, amount) in [
        ("text", json!("1234.50")),
        ("number", json!(1234.5)),
        ("padded", json!(" 99.90 ")),
        ("word", json!("twelve")),
        ("infinite", json!("inf")),
        ("absent", serde_json::Value::Null),
    ] {
        let mut r = routed(id, Route::SyncReview, 0.0, 1);
        r.event.insert("amount".into(), amount);
        s.apply_routed(r, pos());
    }
    let impact = |id: &str| s.case(id).unwrap().impact();
    assert_eq!(impact("text"), 1234.5 * 0.8);
    assert_eq!(impact("number"), impact("text"));
    assert_eq!(impact("padded"), 99.9 * 0.8);
    for id in ["word", "infinite", "absent"] {
        assert_eq!(impact(id), 0.0, "{id}");
    }
}

#[test]
fn queues_sort_by_impact_then_age_and_count_their_cases() {
    let s = CaseStore::new(settings(10));
    s.apply_routed(routed("small", Route::SyncReview, 10.0, 1), pos());
    s.apply_routed(routed("large", Route::SyncReview, 1_000.0, 9), pos());
    s.apply_routed(routed("async", Route::AsyncReview, 1e6, 0), pos());
    s.apply_routed(routed("small-late", Route::SyncReview, 10.0, 3), pos());
    let ids: Vec<String> =
        s.queue(&[Route::SyncReview, Route::AsyncReview]).iter().map(|c| c.event_id.to_string()).collect();
    assert_eq!(ids, ["large", "small", "small-late", "async"]);
    let stats = s.stats(100);
    assert_eq!(
        stats[0],
        (Route::SyncReview, QueueStats { open: 3, claimed: 0, awaiting_signoff: 0, oldest_routed_at: Some(1) })
    );
    assert_eq!(stats[1].1.open, 1);
}
