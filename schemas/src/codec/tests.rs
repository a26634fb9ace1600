use super::*;
use crate::routed::{Contribution, EventFormat, ScoreTexts};
use crate::Route;
use std::borrow::Cow;

/// The fast encoding of `value` is byte for byte what the reference library writes, and the
/// reference library reads it as a datum of the schema. (Each test reads it back with this
/// crate's decoder too.)
fn same_as_reference<T: Serialize + std::fmt::Debug>(contract: &Contract, value: &T) {
    let mut fast = Vec::new();
    encode_avro(contract, value, &mut fast).unwrap();
    let mut reference = Vec::new();
    apache_avro::write_avro_datum_ref(contract.schema(), value, &mut reference).unwrap();
    assert_eq!(fast, reference, "{value:?}");
    apache_avro::from_avro_datum(contract.schema(), &mut fast.as_slice(), None).unwrap();
}

fn routed<E>(event: E) -> RoutedRecord<'static, E> {
    RoutedRecord {
        event_id: "evt-1".into(),
        route: Route::SyncReview,
        rule: "sync-review".into(),
        guardrail: false,
        risk_score: 0.93,
        confidence: 0.7,
        model_version: "fraud-v3".into(),
        policy_version: "2026.11.1".into(),
        explanation: vec![Contribution { feature: "amount".into(), contribution: 1.5 }],
        routed_at: 1_790_000_000_000,
        sla_deadline: Some(1_790_000_000_000 + 1_800_000),
        event_format: EventFormat::Json,
        event,
    }
}

#[test]
fn embedded_schemas_parse() {
    assert_eq!(routed_schema().name().unwrap().fullname(None), "io.tollgate.v1.RoutedEvent");
    assert_eq!(audit_schema().name().unwrap().fullname(None), "io.tollgate.v1.AuditRecord");
}

#[test]
fn routed_avro_round_trip() {
    let original = br#"{"event_id":"evt-1","amount":12.5}"#;
    let rec = routed(AvroBytes(Cow::Borrowed(&original[..])));
    let mut buf = Vec::new();
    rec.write_avro(&mut buf).unwrap();
    same_as_reference(&ROUTED, &rec.clone().with_event(AvroBytes(Cow::Owned(original.to_vec()))));
    let back = RoutedRecord::from_avro(&buf).unwrap();
    assert_eq!(back.event.0.as_ref(), &original[..]);
    assert_eq!(back.route, Route::SyncReview);
    assert_eq!(back.sla_deadline, rec.sla_deadline);
    assert_eq!(back.explanation, rec.explanation);
    assert_eq!(back.event_id, "evt-1");
}

#[test]
fn routed_avro_without_deadline() {
    let mut rec = routed(AvroBytes(Cow::Borrowed(&b"x"[..])));
    rec.sla_deadline = None;
    rec.route = Route::AutoCommit;
    let mut buf = Vec::new();
    rec.write_avro(&mut buf).unwrap();
    same_as_reference(&ROUTED, &rec);
    let back = RoutedRecord::from_avro(&buf).unwrap();
    assert_eq!(back.sla_deadline, None);
    assert_eq!(back.route, Route::AutoCommit);
}

#[test]
fn routed_json_embeds_the_event_as_json() {
    let event: serde_json::Value = serde_json::json!({"event_id": "evt-1", "amount": 12.5});
    let rec = routed(&event);
    let mut buf = Vec::new();
    rec.write_json(&mut buf).unwrap();
    let back = RoutedRecord::from_json(&buf).unwrap();
    assert_eq!(back.event, event);
    assert_eq!(back.route, Route::SyncReview);
    let text = String::from_utf8(buf).unwrap();
    assert!(text.contains(r#""route":"sync_review""#), "{text}");
}

#[test]
fn an_embedded_event_text_encodes_as_the_event_value_would() {
    // Keys in sorted order, as `serde_json::Value` writes them.
    let text = r#"{"amount":12.5,"card":{"country":"DE"},"event_id":"evt-1"}"#;
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let (mut spliced, mut serialized) = (Vec::new(), Vec::new());
    routed(()).write_json_with_event(text, &mut spliced);
    routed(&value).write_json(&mut serialized).unwrap();
    assert_eq!(String::from_utf8(spliced).unwrap(), String::from_utf8(serialized).unwrap());
}

#[test]
fn score_texts_are_written_as_given_and_read_back_as_the_scores() {
    let text = r#"{"event_id":"evt-1"}"#;
    let record = routed(());
    let scores = ScoreTexts { risk: Some("9.30e-1"), confidence: None };
    let mut buf = Vec::new();
    record.write_json_with_event_and_scores(text, scores, &mut buf);
    let written = String::from_utf8(buf.clone()).unwrap();
    assert!(written.contains(r#""risk_score":9.30e-1,"confidence":"#), "{written}");
    let back = RoutedRecord::from_json(&buf).unwrap();
    assert_eq!((back.risk_score, back.confidence), (record.risk_score, record.confidence));
}

/// A routing audit record with every kind of field set.
fn audit_record() -> AuditRecord<'static> {
    AuditRecord {
        event_id: "evt-9".into(),
        timestamp: "2026-11-21T06:00:00.000Z".into(),
        actor: "policy".into(),
        actor_role: None,
        action: crate::AuditAction::Route.as_str().into(),
        decision: "auto_commit".into(),
        rule: Some("default".into()),
        guardrail: false,
        policy_version: Some("v1".into()),
        model_version: Some("m1".into()),
        risk_score: Some(0.1),
        confidence: Some(0.95),
        explanation: vec![],
        input_snapshot: r#"{"amount":1}"#.into(),
        rationale: None,
        sla_expected_ms: None,
        sla_actual_ms: None,
        source_topic: "payments".into(),
        source_partition: 3,
        source_offset: 42,
        chain_seq: None,
        chain_prev: None,
        chain_hash: None,
    }
}

#[test]
fn audit_round_trips_in_both_formats() {
    let rec = audit_record();
    same_as_reference(&AUDIT, &rec);
    let mut sealed = AuditRecord { actor_role: Some("fraud_analyst".into()), ..rec.clone() };
    sealed.seal(3, crate::audit::GENESIS);
    same_as_reference(&AUDIT, &sealed);
    let mut buf = Vec::new();
    sealed.write(RecordFormat::Avro, &mut buf).unwrap();
    assert_eq!(AuditRecord::read(RecordFormat::Avro, &buf).unwrap(), sealed);
    for format in [RecordFormat::Json, RecordFormat::Avro] {
        let mut buf = Vec::new();
        rec.write(format, &mut buf).unwrap();
        assert_eq!(AuditRecord::read(format, &buf).unwrap(), rec, "{format:?}");
    }
}

#[test]
fn audit_records_are_read_borrowing_their_text_and_optional_fields_may_be_absent() {
    let rec = AuditRecord { rationale: Some("said \"no\"".into()), ..audit_record() };
    for format in [RecordFormat::Json, RecordFormat::Avro] {
        let mut buf = Vec::new();
        rec.write(format, &mut buf).unwrap();
        let read = AuditRecord::read_borrowed(format, &buf).unwrap();
        assert_eq!(read, rec, "{format:?}");
        assert!(matches!(read.event_id, Cow::Borrowed(_)), "{format:?}");
        assert!(matches!(read.rule, Some(Cow::Borrowed(_))), "{format:?}");
    }
    let minimal = br#"{"event_id":"e","timestamp":"t","actor":"a","action":"route","decision":"d","guardrail":false,"explanation":[],"input_snapshot":"{}","source_topic":"s","source_partition":0,"source_offset":1}"#;
    let read = AuditRecord::read(RecordFormat::Json, minimal).unwrap();
    assert_eq!((read.rule, read.chain_hash, read.actor_role), (None, None, None));
    assert!(AuditRecord::read(RecordFormat::Json, b"{\"event_id\":\"\xff\"}").is_err());
}

#[test]
fn decisions_round_trip_and_json_may_omit_optional_fields() {
    use crate::decision::ReviewAction;
    let d = ReviewDecision {
        decision_id: Some("d-1".into()),
        event_id: "evt-3".into(),
        reviewer_id: "ana".into(),
        reviewer_role: "fraud_analyst".into(),
        action: ReviewAction::Reject,
        rationale: "card reported stolen".into(),
        decided_at: 1_790_000_100_000,
        second_signoff: Some("ben".into()),
    };
    same_as_reference(&DECISION, &d);
    same_as_reference(&DECISION, &ReviewDecision { decision_id: None, second_signoff: None, ..d.clone() });
    for format in [RecordFormat::Json, RecordFormat::Avro] {
        let mut buf = Vec::new();
        d.write(format, &mut buf).unwrap();
        assert_eq!(ReviewDecision::read(format, &buf).unwrap(), d, "{format:?}");
    }
    let minimal = br#"{"event_id":"e","reviewer_id":"r","reviewer_role":"x","action":"escalate","decided_at":5,"decision_id":null}"#;
    let d = ReviewDecision::read(RecordFormat::Json, minimal).unwrap();
    assert_eq!((d.action, d.rationale.as_ref(), d.second_signoff.as_deref()), (ReviewAction::Escalate, "", None));
    assert_eq!(d.fingerprint(), "r|escalate|5");
    assert!(ReviewDecision::read(RecordFormat::Json, br#"{"event_id":"e","action":"maybe"}"#).is_err());
    // Read borrowed: plain text is borrowed from the input, text with escapes is unescaped.
    let json = br#"{"decision_id":"d-1","event_id":"e-1","reviewer_id":"ana","reviewer_role":"senior","action":"approve","rationale":"said \"ok\"","decided_at":7,"second_signoff":"ben"}"#;
    let d = ReviewDecision::read_borrowed(RecordFormat::Json, json).unwrap();
    let borrowed = |t: &Cow<'_, str>| matches!(t, Cow::Borrowed(_));
    assert!([&d.event_id, &d.reviewer_id, &d.reviewer_role].into_iter().all(borrowed));
    assert!(d.decision_id.as_ref().is_some_and(borrowed) && d.second_signoff.as_ref().is_some_and(borrowed));
    assert_eq!(d.rationale, "said \"ok\"");
    assert!(!borrowed(&d.rationale));
    assert_eq!(d.clone().into_owned(), d);
    assert_eq!(d.fingerprint(), "id:d-1");
    let at = ReviewDecision { decision_id: None, decided_at: 1_790_000_100_000, ..d.clone() };
    assert_eq!(at.fingerprint(), "ana|approve|1790000100000");
    assert_eq!(ReviewDecision::read(RecordFormat::Json, json).unwrap(), d);
    // A missing optional field is absent, as before.
    let d = ReviewDecision::read_borrowed(
        RecordFormat::Json,
        br#"{"event_id":"e","reviewer_id":"r","reviewer_role":"x","action":"approve","decided_at":5}"#,
    )
    .unwrap();
    assert_eq!((d.decision_id, d.second_signoff), (None, None));
}

#[test]
fn review_records_round_trip() {
    use crate::decision::ReviewAction;
    use crate::review::{ChangeState, ReviewOutcome};
    let change = PendingChange {
        event_id: "e".into(),
        state: ChangeState::Pending,
        queue: Route::SyncReview,
        revision: 3,
        tier: 2,
        held: false,
        info_requested: true,
        post_verify: false,
        risk_score: 0.93,
        confidence: 0.7,
        routed_at: 1,
        deadline: 2,
        policy_version: "p".into(),
        model_version: "m".into(),
        rule: "r".into(),
        applied: vec!["id:d1".into()],
        resolved_at: None,
        event_format: EventFormat::Json,
        event: AvroBytes(Cow::Borrowed(b"{\"a\":1}")),
    };
    let mut buf = Vec::new();
    change.write(&mut buf);
    assert_eq!(PendingChange::read(&buf).unwrap(), change);
    same_as_reference(&PENDING_CHANGE, &change);
    same_as_reference(
        &PENDING_CHANGE,
        &PendingChange { state: ChangeState::Resolved, resolved_at: Some(9), ..change.clone() },
    );

    let resolved = ResolvedEvent {
        event_id: "e".into(),
        queue: Route::AsyncReview,
        rule: "r".into(),
        recommendation: ReviewOutcome::Rejected,
        action: Some(ReviewAction::Approve),
        outcome: ReviewOutcome::Approved,
        actor: "ana".into(),
        actor_role: Some("fraud_analyst".into()),
        rationale: "known customer".into(),
        second_signoff: None,
        overridden: true,
        review_latency_ms: 60_000,
        sla_met: true,
        tier: 1,
        decided_at: 3,
        rollback: false,
        risk_score: 0.8,
        confidence: 0.7,
        policy_version: "p".into(),
        model_version: "m".into(),
        event_format: EventFormat::Json,
        event: AvroBytes(Cow::Borrowed(b"{}")),
    };
    let mut buf = Vec::new();
    resolved.write_avro(&mut buf).unwrap();
    assert_eq!(ResolvedEvent::from_avro(&buf).unwrap(), resolved);
    same_as_reference(&RESOLVED, &resolved);
    let timeout = ResolvedEvent { action: None, actor_role: None, ..resolved.clone() };
    let mut buf = Vec::new();
    timeout.write_avro(&mut buf).unwrap();
    assert_eq!(ResolvedEvent::from_avro(&buf).unwrap().action, None);
    same_as_reference(&RESOLVED, &timeout);
    let json = timeout.clone().with_event(serde_json::json!({"amount": 5}));
    let mut buf = Vec::new();
    json.write_json(&mut buf).unwrap();
    assert_eq!(ResolvedEvent::from_json(&buf).unwrap().event["amount"], 5);

    let esc = EscalationRecord {
        event_id: "e".into(),
        queue: Route::SyncReview,
        from_tier: 1,
        to_tier: 2,
        age_ms: 1_800_000,
        actor: "policy_timeout".into(),
        held: false,
        at: 4,
        deadline: Some(5),
    };
    same_as_reference(&ESCALATION, &esc);
    same_as_reference(&ESCALATION, &EscalationRecord { deadline: None, ..esc.clone() });
    for format in [RecordFormat::Json, RecordFormat::Avro] {
        let mut buf = Vec::new();
        esc.write(format, &mut buf).unwrap();
        assert_eq!(EscalationRecord::read(format, &buf).unwrap(), esc);
    }
}

#[test]
fn sealing_while_writing_gives_what_sealing_then_writing_gives() {
    let base = AuditRecord {
        // A quote to escape and a contribution, beside the fixture's fields.
        event_id: "evt-\"9\"".into(),
        explanation: vec![crate::Contribution { feature: "amount".into(), contribution: 1.25 }],
        ..audit_record()
    };
    for format in [RecordFormat::Json, RecordFormat::Avro] {
        let mut expected = base.clone();
        expected.seal(7, crate::audit::GENESIS);
        let mut want = Vec::new();
        expected.write(format, &mut want).unwrap();
        let mut got = Vec::new();
        let mut record = base.clone();
        let hash = record.seal_and_write(7, crate::audit::GENESIS, format, &mut got).unwrap();
        assert_eq!(got, want, "{format:?}");
        assert_eq!(Some(hash.as_str()), expected.chain_hash.as_deref());
        assert_eq!(record, expected);
        assert_eq!(AuditRecord::read(format, &got).unwrap().digest(), hash);
    }
}

#[test]
fn case_gates_round_trip() {
    use crate::gateway::{Claim, PendingSignoff, SignoffAction};
    let empty = CaseGate { event_id: "e".into(), revision: 1, claim: None, signoff: None };
    let full = CaseGate {
        event_id: "e".into(),
        revision: 7,
        claim: Some(Claim { reviewer_id: "ana".into(), reviewer_role: "fraud_analyst".into(), expires_at: 9 }),
        signoff: Some(PendingSignoff {
            decision_id: "ana/k1".into(),
            reviewer_id: "ana".into(),
            reviewer_role: "fraud_analyst".into(),
            action: SignoffAction::Reject,
            rationale: "stolen card".into(),
            at: 8,
        }),
    };
    for gate in [empty, full] {
        same_as_reference(&CASE_GATE, &gate);
        let mut buf = Vec::new();
        gate.write(&mut buf).unwrap();
        assert_eq!(CaseGate::read(&buf).unwrap(), gate);
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(RoutedRecord::from_avro(&[0xff, 0xff, 0xff]).is_err());
    assert!(RoutedRecord::from_json(b"{").is_err());
    assert!(AuditRecord::read(RecordFormat::Avro, &[]).is_err());
}
