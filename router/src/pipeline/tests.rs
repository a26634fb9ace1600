//! Pipeline tests on the reference example: routing, dead letters, audit records, formats.

use super::*;
use crate::config::{InputFormat, RouterConfig};
use std::path::Path;
use tollgate_schemas::{AvroBytes, RoutedRecord};

const EXAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/payments");

fn example_config() -> RouterConfig {
    RouterConfig::load(&Path::new(EXAMPLE_DIR).join("router.toml")).unwrap()
}

fn source() -> Source<'static> {
    Source { topic: "payments", partition: 2, offset: 41 }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_790_000_000_000)
}

use crate::policy::tests::expected;

fn sample() -> Vec<String> {
    std::fs::read_to_string(Path::new(EXAMPLE_DIR).join("sample.jsonl")).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn reference_sample_routes_as_specified_with_complete_records() {
    let p = Pipeline::from_config(&example_config()).unwrap();
    let mut out = Output::default();
    let mut seen = std::collections::BTreeSet::new();
    for line in sample() {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        let (risk, conf) = (event["risk_score"].as_f64().unwrap(), event["model_confidence"].as_f64().unwrap());
        let verdict = p.process(Some(line.as_bytes()), source(), now(), &mut out);
        let Verdict::Routed { route, topic, .. } = verdict else { panic!("{line}: {verdict:?}") };
        assert_eq!(route, expected(risk, conf), "{line}");
        seen.insert(route);
        let rec = RoutedRecord::from_json(&out.value).unwrap();
        assert_eq!(rec.event, event, "the original event is embedded unchanged");
        assert_eq!(rec.event_id, event["event_id"].as_str().unwrap());
        assert_eq!(rec.route, route);
        assert_eq!(rec.policy_version, "payments-2026.11.1");
        assert_eq!(rec.model_version, "fraud-gbm-2026.10");
        assert_eq!(rec.routed_at, 1_790_000_000_000);
        assert_eq!(topic, format!("tollgate.{}", route.as_str().replace('_', "-")));
        match route {
            Route::SyncReview => {
                assert_eq!(rec.sla_deadline, Some(1_790_000_000_000 + 30 * 60_000))
            }
            Route::AsyncReview => {
                assert_eq!(rec.sla_deadline, Some(1_790_000_000_000 + 4 * 3_600_000))
            }
            _ => assert_eq!(rec.sla_deadline, None),
        }
        let audit = AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap();
        assert_eq!(audit.event_id, rec.event_id);
        assert_eq!(audit.action, "route");
        assert_eq!(audit.actor, "policy");
        assert_eq!(audit.decision, route.as_str());
        assert_eq!(audit.rule.as_deref(), Some(rec.rule.as_ref()));
        assert_eq!(audit.timestamp, "2026-09-21T14:13:20.000Z");
        assert_eq!((audit.source_topic.as_ref(), audit.source_partition, audit.source_offset), ("payments", 2, 41));
        let snapshot: serde_json::Value = serde_json::from_str(&audit.input_snapshot).unwrap();
        assert_eq!(snapshot["account_id"], "[redacted]", "redacted per config");
        assert_eq!(snapshot["amount"], event["amount"]);
        assert_eq!(snapshot["risk_score"], event["risk_score"]);
    }
    assert_eq!(seen.len(), 4, "the sample covers all four routes");
}

#[test]
fn snapshot_text_that_needs_escaping_is_recorded_exactly_whatever_the_output_format() {
    let merchant = "Café \"Zur Post\" \\ line\nbreak \u{1}";
    let line = format!(
        r#"{{"event_id":"pay-x","account_id":"a","amount":5,"currency":"EUR","merchant_category":{},"country":"DE","risk_score":0.5,"model_confidence":0.5,"model_version":"m"}}"#,
        serde_json::to_string(merchant).unwrap()
    );
    let mut snapshots = Vec::new();
    for format in [RecordFormat::Json, RecordFormat::Avro] {
        let mut config = example_config();
        config.output.format = format;
        let p = Pipeline::from_config(&config).unwrap();
        let mut out = Output::default();
        let verdict = p.process(Some(line.as_bytes()), source(), now(), &mut out);
        assert!(matches!(verdict, Verdict::Routed { .. }), "{verdict:?}");
        // The intake takes Avro whatever the output format.
        let audit = AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap();
        let snapshot: serde_json::Value = serde_json::from_str(&audit.input_snapshot).unwrap();
        assert_eq!(snapshot["merchant_category"], merchant, "{format:?}");
        assert_eq!(snapshot["account_id"], "[redacted]", "{format:?}");
        snapshots.push(audit.input_snapshot.into_owned());
    }
    assert_eq!(snapshots[0], snapshots[1], "the same snapshot whatever the output format");
}

/// Numbers read from a JSON input are recorded as the input wrote them, in the routed record's
/// scores and in the audit snapshot, and read back as the values the decision used.
#[test]
fn numbers_are_recorded_as_the_json_input_wrote_them() {
    let line = r#"{"event_id":"pay-n","account_id":"a","amount":1.250e2,"currency":"EUR","merchant_category":"grocery","country":"DE","risk_score":9.5e-1,"model_confidence": 0.990 ,"model_version":"m"}"#;
    let p = Pipeline::from_config(&example_config()).unwrap();
    let mut out = Output::default();
    let verdict = p.process(Some(line.as_bytes()), source(), now(), &mut out);
    assert!(matches!(verdict, Verdict::Routed { .. }), "{verdict:?}");
    let routed = std::str::from_utf8(&out.value).unwrap();
    assert!(routed.contains(r#""risk_score":9.5e-1,"confidence":0.990,"#), "{routed}");
    let rec = RoutedRecord::from_json(&out.value).unwrap();
    assert_eq!((rec.risk_score, rec.confidence), (0.95, 0.99));
    let audit = AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap();
    assert!(audit.input_snapshot.contains(r#""amount":1.250e2"#), "{}", audit.input_snapshot);
    assert!(audit.input_snapshot.contains(r#""risk_score":9.5e-1"#), "{}", audit.input_snapshot);
    let snapshot: serde_json::Value = serde_json::from_str(&audit.input_snapshot).unwrap();
    assert_eq!(snapshot["amount"], 125.0);
    assert_eq!((audit.risk_score, audit.confidence), (Some(0.95), Some(0.99)));
}

/// Money written as JSON text is not a number to a policy bound: the event routes as if the
/// bound were false, and the verdict names the field, for the router to count. With
/// `untestable_guardrails = "match"`, the guardrail holds instead, and its audit record says why.
#[test]
fn a_bound_on_json_text_is_false_and_the_verdict_names_its_field() {
    let guarded = |setting: &str| {
        let policy = std::env::temp_dir().join(format!("tollgate-text-bound-{}-{setting}.toml", std::process::id()));
        // Before the first table, the setting is a top-level key.
        let text = std::fs::read_to_string(Path::new(EXAMPLE_DIR).join("policy.toml")).unwrap().replacen(
            "[[rules]]",
            &format!("untestable_guardrails = \"{setting}\"\n[[guardrails]]\nname = \"big-amount\"\nroute = \"sync_review\"\nall = [{{ field = \"amount\", gte = 10000 }}]\n\n[[rules]]"),
            1,
        );
        std::fs::write(&policy, text).unwrap();
        let mut c = example_config();
        c.policy.file = policy.clone();
        let p = Pipeline::from_config(&c);
        std::fs::remove_file(&policy).unwrap();
        p.unwrap()
    };
    let event = |amount: &str| {
        format!(
            r#"{{"event_id":"pay-t","account_id":"a","amount":{amount},"currency":"EUR","merchant_category":"grocery","country":"DE","risk_score":0.1,"model_confidence":0.99,"model_version":"m"}}"#
        )
    };
    let p = guarded("skip");
    let mut out = Output::default();
    let verdict = p.process(Some(event("20000").as_bytes()), source(), now(), &mut out);
    assert!(matches!(verdict, Verdict::Routed { route: Route::SyncReview, not_numeric: None, .. }), "{verdict:?}");
    let verdict = p.process(Some(event(r#""20000.00""#).as_bytes()), source(), now(), &mut out);
    let counted = matches!(verdict, Verdict::Routed { route: Route::AutoCommit, not_numeric: Some("amount"), .. });
    assert!(counted, "{verdict:?}");
    assert_eq!(AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap().rationale, None);

    let p = guarded("match");
    let verdict = p.process(Some(event(r#""20000.00""#).as_bytes()), source(), now(), &mut out);
    let held = matches!(verdict, Verdict::Routed { route: Route::SyncReview, not_numeric: Some("amount"), .. });
    assert!(held, "{verdict:?}");
    let audit = AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap();
    assert_eq!((audit.rule.as_deref(), audit.guardrail), (Some("big-amount"), true));
    assert_eq!(audit.rationale.as_deref(), Some(crate::pipeline::UNTESTED_RATIONALE));
    let verdict = p.process(Some(event("5").as_bytes()), source(), now(), &mut out);
    assert!(matches!(verdict, Verdict::Routed { route: Route::AutoCommit, not_numeric: None, .. }), "{verdict:?}");
}

fn reason_of(p: &Pipeline, payload: Option<&[u8]>) -> RejectReason {
    let mut out = Output::default();
    match p.process(payload, source(), now(), &mut out) {
        Verdict::Rejected(r) => {
            let audit = AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap();
            assert_eq!(audit.action, "dead_letter");
            assert_eq!(audit.decision, r.reason.as_str());
            assert_eq!(audit.rationale.as_deref(), Some(r.message.as_str()));
            assert!(out.value.is_empty());
            r.reason
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn bad_input_is_rejected_with_its_reason_and_audited() {
    let p = Pipeline::from_config(&example_config()).unwrap();
    let ok = r#"{"event_id":"e","risk_score":0.5,"model_confidence":0.9,"model_version":"m"}"#;
    assert!(matches!(p.process(Some(ok.as_bytes()), source(), now(), &mut Output::default()), Verdict::Routed { .. }));
    let cases: &[(Option<&[u8]>, RejectReason)] = &[
        (None, RejectReason::EmptyPayload),
        (Some(b""), RejectReason::EmptyPayload),
        (Some(b"{not json"), RejectReason::MalformedJson),
        (Some(b"[1,2,3]"), RejectReason::MalformedJson),
        (Some(br#"{"risk_score":0.5,"model_confidence":0.9,"model_version":"m"}"#), RejectReason::MissingField),
        (
            Some(br#"{"event_id":"","risk_score":0.5,"model_confidence":0.9,"model_version":"m"}"#),
            RejectReason::InvalidField,
        ),
        (Some(br#"{"event_id":"e","model_confidence":0.9,"model_version":"m"}"#), RejectReason::MissingField),
        (
            Some(br#"{"event_id":"e","risk_score":"high","model_confidence":0.9,"model_version":"m"}"#),
            RejectReason::InvalidField,
        ),
        (
            Some(br#"{"event_id":"e","risk_score":1.2,"model_confidence":0.9,"model_version":"m"}"#),
            RejectReason::ScoreOutOfRange,
        ),
        (
            Some(br#"{"event_id":"e","risk_score":0.5,"model_confidence":-0.1,"model_version":"m"}"#),
            RejectReason::ScoreOutOfRange,
        ),
        (Some(br#"{"event_id":"e","risk_score":0.5,"model_confidence":0.9}"#), RejectReason::MissingField),
        (
            Some(br#"{"event_id":"e","risk_score":1e999,"model_confidence":0.9,"model_version":"m"}"#),
            RejectReason::MalformedJson,
        ),
    ];
    for (payload, reason) in cases {
        assert_eq!(reason_of(&p, *payload), *reason, "{:?}", payload.map(String::from_utf8_lossy));
    }
}

#[test]
fn undecodable_input_is_identified_by_its_position() {
    let p = Pipeline::from_config(&example_config()).unwrap();
    let mut out = Output::default();
    p.process(Some(b"garbage"), source(), now(), &mut out);
    assert_eq!(out.event_id, "payments/2/41");
    let audit = AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap();
    assert_eq!(audit.event_id, "payments/2/41");
    assert_eq!(audit.input_snapshot, "{}");
}

fn avro_payment(risk: f64, confidence: f64) -> Vec<u8> {
    avro_payment_of(250.0, risk, confidence)
}

fn avro_payment_of(amount: f64, risk: f64, confidence: f64) -> Vec<u8> {
    use apache_avro::types::Value;
    let schema =
        apache_avro::Schema::parse_str(&std::fs::read_to_string(Path::new(EXAMPLE_DIR).join("payment.avsc")).unwrap())
            .unwrap();
    let s = |v: &str| Value::String(v.into());
    let v = Value::Record(vec![
        ("event_id".into(), s("avro-1")),
        ("account_id".into(), s("acct-1")),
        ("amount".into(), Value::Double(amount)),
        ("currency".into(), s("EUR")),
        ("merchant_category".into(), s("travel")),
        ("country".into(), s("FR")),
        ("risk_score".into(), Value::Double(risk)),
        ("model_confidence".into(), Value::Double(confidence)),
        ("model_version".into(), s("fraud-gbm-2026.10")),
    ]);
    apache_avro::to_avro_datum(&schema, v).unwrap()
}

fn avro_config(confluent: bool) -> RouterConfig {
    let mut c = example_config();
    c.input.format = if confluent { InputFormat::AvroConfluent } else { InputFormat::Avro };
    c.input.avro_schema = Some("payment.avsc".into());
    c.input.confluent_schema_ids = if confluent { vec![7] } else { vec![] };
    c
}

#[test]
fn avro_input_routes_and_converts_to_json() {
    let p = Pipeline::from_config(&avro_config(false)).unwrap();
    let mut out = Output::default();
    let v = p.process(Some(&avro_payment(0.93, 0.9)), source(), now(), &mut out);
    assert!(matches!(v, Verdict::Routed { route: Route::SyncReview, .. }), "{v:?}");
    let rec = RoutedRecord::from_json(&out.value).unwrap();
    assert_eq!(rec.event["country"], "FR");
    assert_eq!(rec.event_format, EventFormat::Avro);
    // NaN is representable in Avro and must be refused: as a score by the scorer, elsewhere
    // because the JSON routed record could not carry it.
    assert_eq!(reason_of(&p, Some(&avro_payment(f64::NAN, 0.9))), RejectReason::NonFiniteScore);
    assert_eq!(reason_of(&p, Some(&avro_payment_of(f64::INFINITY, 0.1, 0.99))), RejectReason::EncodeFailed);
    // With Avro output the datum is embedded as it is, so the same event routes.
    let mut c = avro_config(false);
    c.output.format = RecordFormat::Avro;
    let avro_out = Pipeline::from_config(&c).unwrap();
    let v = avro_out.process(Some(&avro_payment_of(f64::INFINITY, 0.1, 0.99)), source(), now(), &mut out);
    assert!(matches!(v, Verdict::Routed { .. }), "{v:?}");
    assert_eq!(reason_of(&p, Some(b"{\"event_id\":1}")), RejectReason::AvroDecode);
}

#[test]
fn confluent_framed_avro_with_avro_output_keeps_the_original_bytes() {
    let mut c = avro_config(true);
    c.output.format = RecordFormat::Avro;
    let p = Pipeline::from_config(&c).unwrap();
    let mut framed = vec![0, 0, 0, 0, 7];
    framed.extend(avro_payment(0.1, 0.99));
    let mut out = Output::default();
    let v = p.process(Some(&framed), source(), now(), &mut out);
    assert!(matches!(v, Verdict::Routed { route: Route::AutoCommit, .. }), "{v:?}");
    let rec = RoutedRecord::<AvroBytes>::from_avro(&out.value).unwrap();
    assert_eq!(rec.event.0.as_ref(), framed.as_slice());
    let audit = AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap();
    assert_eq!(audit.event_id, "avro-1");
    framed[4] = 8;
    assert_eq!(reason_of_avro(&p, &framed), RejectReason::SchemaMismatch);
}

fn reason_of_avro(p: &Pipeline, payload: &[u8]) -> RejectReason {
    match p.process(Some(payload), source(), now(), &mut Output::default()) {
        Verdict::Rejected(r) => r.reason,
        other => panic!("{other:?}"),
    }
}

#[test]
fn logistic_scorer_from_the_example_model_explains_its_score() {
    let mut c = example_config();
    c.scorer.kind = crate::config::ScorerKind::Logistic;
    c.scorer.model = Some("model.toml".into());
    let p = Pipeline::from_config(&c).unwrap();
    let mut out = Output::default();
    let risky = br#"{"event_id":"l1","amount":4800,"currency":"NGN","merchant_category":"crypto","country":"NG"}"#;
    let v = p.process(Some(risky), source(), now(), &mut out);
    let Verdict::Routed { risk, .. } = v else { panic!("{v:?}") };
    assert!(risk > 0.9, "{risk}");
    let rec = RoutedRecord::from_json(&out.value).unwrap();
    assert_eq!(rec.model_version, "payments-logistic-2026.11");
    assert_eq!(rec.explanation.len(), 3);
    // ln(1 + 4800) = 8.48 → (8.48 − 4.0)/1.5 · 1.1 = 3.28, ahead of the crypto weight 2.9.
    let features: Vec<_> = rec.explanation.iter().map(|c| c.feature.as_ref()).collect();
    assert_eq!(features, ["amount", "merchant_category=crypto", "country=NG"]);
    assert!((rec.explanation[0].contribution - 3.2828).abs() < 1e-3);
    let calm = br#"{"event_id":"l2","amount":20,"currency":"EUR","merchant_category":"grocery","country":"DE"}"#;
    let v = p.process(Some(calm), source(), now(), &mut out);
    assert!(matches!(v, Verdict::Routed { route: Route::AutoCommit, .. }), "{v:?}");
}

#[test]
fn the_fallback_key_is_the_key_field_else_the_event_id() {
    let event =
        br#"{"event_id":"e1","account_id":"acct-9","risk_score":0.1,"model_confidence":0.99,"model_version":"m"}"#;
    let mut out = Output::default();
    let p = Pipeline::from_config(&example_config()).unwrap();
    p.process(Some(event), source(), now(), &mut out);
    assert_eq!(out.fallback_key, "e1");
    let mut c = example_config();
    c.input.fields.key = "account_id".into();
    let p = Pipeline::from_config(&c).unwrap();
    p.process(Some(event), source(), now(), &mut out);
    assert_eq!(out.fallback_key, "acct-9");
    let no_account = br#"{"event_id":"e2","risk_score":0.1,"model_confidence":0.99,"model_version":"m"}"#;
    p.process(Some(no_account), source(), now(), &mut out);
    assert_eq!(out.fallback_key, "e2");
}

#[test]
fn review_routes_write_a_changelog_entry_with_the_original_event() {
    let mut c = example_config();
    c.review.async_review.post_verify = true;
    let p = Pipeline::from_config(&c).unwrap();
    let mut out = Output::default();
    let sync = br#"{"event_id":"s1","risk_score":0.93,"model_confidence":0.9,"model_version":"m"}"#;
    let v = p.process(Some(sync), source(), now(), &mut out);
    assert!(matches!(v, Verdict::Routed { route: Route::SyncReview, pre_accept: None, .. }), "{v:?}");
    let change = tollgate_schemas::PendingChange::read(&out.changelog).unwrap();
    assert_eq!(change.event_id, "s1");
    assert_eq!((change.queue, change.tier, change.revision), (Route::SyncReview, 1, 0));
    assert_eq!(change.deadline, change.routed_at + 30 * 60_000);
    assert_eq!(change.event.0.as_ref(), &sync[..]);
    assert_eq!(change.rule, "sync-review");
    let post_verify = br#"{"event_id":"a1","risk_score":0.7,"model_confidence":0.9,"model_version":"m"}"#;
    let v = p.process(Some(post_verify), source(), now(), &mut out);
    assert!(
        matches!(v, Verdict::Routed { route: Route::AsyncReview, pre_accept: Some("tollgate.auto-commit"), .. }),
        "{v:?}"
    );
    assert!(tollgate_schemas::PendingChange::read(&out.changelog).unwrap().post_verify);
    let routine = br#"{"event_id":"c1","risk_score":0.1,"model_confidence":0.99,"model_version":"m"}"#;
    p.process(Some(routine), source(), now(), &mut out);
    assert!(out.changelog.is_empty(), "no review, no changelog entry");
}

#[test]
fn a_sample_of_auto_committed_events_goes_to_post_verify_review_deterministically() {
    let mut c = example_config();
    c.review.audit_sample_rate = 0.2;
    let p = Pipeline::from_config(&c).unwrap();
    let mut out = Output::default();
    let mut sampled = Vec::new();
    for i in 0..2_000 {
        let event = format!(r#"{{"event_id":"ac-{i}","risk_score":0.1,"model_confidence":0.99,"model_version":"m"}}"#);
        let v = p.process(Some(event.as_bytes()), source(), now(), &mut out);
        let Verdict::Routed { route: Route::AutoCommit, sample, .. } = v else { panic!("{v:?}") };
        if let Some(topic) = sample {
            assert_eq!(topic, "tollgate.async-review");
            let rec = RoutedRecord::from_json(&out.sample).unwrap();
            assert_eq!((rec.route, rec.rule.as_ref()), (Route::AsyncReview, AUDIT_SAMPLE_RULE));
            let change = tollgate_schemas::PendingChange::read(&out.changelog).unwrap();
            assert!(change.post_verify && change.queue == Route::AsyncReview);
            let audit = AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap();
            assert_eq!(audit.rationale.as_deref(), Some("sampled for a post-verify review"));
            sampled.push(i);
        } else {
            assert!(out.sample.is_empty() && out.changelog.is_empty());
        }
    }
    assert!((300..500).contains(&sampled.len()), "about 20% of 2000: {}", sampled.len());
    // The same ids are drawn again (a replay samples the same events).
    let again: Vec<_> = (0..2_000)
        .filter(|i| {
            let event =
                format!(r#"{{"event_id":"ac-{i}","risk_score":0.1,"model_confidence":0.99,"model_version":"m"}}"#);
            matches!(
                p.process(Some(event.as_bytes()), source(), now(), &mut out),
                Verdict::Routed { sample: Some(_), .. }
            )
        })
        .collect();
    assert_eq!(again, sampled);
}

#[test]
fn a_policy_that_uses_a_disabled_route_is_refused() {
    let mut c = example_config();
    c.topics.auto_reject = String::new();
    let err = Pipeline::from_config(&c).unwrap_err();
    assert!(matches!(err, PipelineError::DisabledRoute(Route::AutoReject)), "{err}");
}

/// The buffers an `Output` keeps between events (fields, JSON form, explanations) carry nothing
/// from one event to the next: each event's records are byte for byte those of a fresh
/// `Output`, with rejected events in between, for JSON and Avro input and both scorers.
#[test]
fn records_do_not_depend_on_the_events_before_them() {
    let mut logistic = example_config();
    logistic.scorer.kind = crate::config::ScorerKind::Logistic;
    logistic.scorer.model = Some("model.toml".into());
    let json_events: Vec<Vec<u8>> = sample()
        .into_iter()
        .map(String::into_bytes)
        .chain([
            br#"{"event_id":"l1","amount":4800,"currency":"NGN","merchant_category":"crypto","country":"NG"}"#.to_vec(),
            b"{not json".to_vec(),
            br#"{"event_id":"l2","amount":20,"currency":"EUR","merchant_category":"grocery","country":"DE"}"#.to_vec(),
            br#"{"event_id":"e\"3","amount":1e2,"risk_score":0.5,"model_confidence":0.7,"model_version":"m"}"#.to_vec(),
        ])
        .collect();
    let avro_events =
        vec![avro_payment(0.1, 0.99), avro_payment_of(9.5, 0.97, 0.4), b"\x01".to_vec(), avro_payment(0.7, 0.8)];
    let cases = [(example_config(), &json_events), (logistic, &json_events), (avro_config(false), &avro_events)];
    for (config, events) in cases {
        let p = Pipeline::from_config(&config).unwrap();
        let mut kept = Output::default();
        for round in 0..2 {
            for event in events.iter() {
                let mut fresh = Output::default();
                let expected = p.process(Some(event), source(), now(), &mut fresh);
                let verdict = p.process(Some(event), source(), now(), &mut kept);
                let what = format!("round {round}, {}", String::from_utf8_lossy(event));
                assert_eq!(verdict, expected, "{what}");
                assert_eq!(kept.value, fresh.value, "{what}");
                assert_eq!(kept.audit, fresh.audit, "{what}");
                assert_eq!(kept.changelog, fresh.changelog, "{what}");
                assert_eq!((&kept.event_id, &kept.fallback_key), (&fresh.event_id, &fresh.fallback_key), "{what}");
            }
        }
    }
}

/// Events whose intake partition is marked get their audit record unsealed, the others in the
/// intake's form; sealed, both are the same chained record. Rejections too. With scores read
/// from the event and with the `logistic` scorer's (whose floats the unsealed record copies
/// from the routed record's texts).
#[test]
fn marked_partitions_get_unsealed_audit_records_that_seal_as_the_intake_form_does() {
    let mut logistic = example_config();
    logistic.scorer.kind = crate::config::ScorerKind::Logistic;
    logistic.scorer.model = Some("model.toml".into());
    for config in [example_config(), logistic] {
        unsealed_and_intake_records_seal_alike(&Pipeline::from_config(&config).unwrap());
    }
}

fn unsealed_and_intake_records_seal_alike(p: &Pipeline) {
    use tollgate_schemas::unsealed::seal_unsealed;
    let place = |id: &[u8]| usize::from(id.last().copied().unwrap_or(0) % 2);
    let mut unsealed_out = Output::default();
    let mut unsealed_for = UnsealedFor::new(place, 2);
    unsealed_for.mark(|partition| partition == 1);
    unsealed_out.unsealed_for = Some(unsealed_for);
    let mut intake_out = Output::default();
    let mut lines = sample();
    lines.push("{not json".into());
    // Snapshot fields with everything a JSON string escapes, and more than ASCII (the unsealed
    // form writes the snapshot's JSON string from its parts).
    // Two ids per text: the test's placement marks one of them.
    let texts = [r#"bar \"Zur Post\" \\ x"#, r#"line\nbreak\ttab\u0001\u001f"#, "café €😀"];
    for (i, text) in texts.iter().flat_map(|t| [t, t]).enumerate() {
        lines.push(format!(
            r#"{{"event_id": "esc-{i}", "account_id": "a\"{i}", "amount": 1e2, "currency": "E\\UR", "merchant_category": "{text}", "country": "DE", "risk_score": 0.5, "model_confidence": 0.6, "model_version": "m"}}"#
        ));
    }
    let mut forms = std::collections::BTreeSet::new();
    for line in lines {
        p.process(Some(line.as_bytes()), source(), now(), &mut intake_out);
        p.process(Some(line.as_bytes()), source(), now(), &mut unsealed_out);
        assert_eq!(intake_out.audit_form, AuditForm::Intake);
        let expected_form =
            if place(unsealed_out.event_id.as_bytes()) == 1 { AuditForm::Unsealed } else { AuditForm::Intake };
        assert_eq!(unsealed_out.audit_form, expected_form, "{line}");
        forms.insert(format!("{expected_form:?}"));
        let mut whole = Vec::new();
        let mut record = AuditRecord::read(RecordFormat::Avro, &intake_out.audit).unwrap();
        if expected_form == AuditForm::Unsealed {
            let mut sealed = Vec::new();
            let hash = seal_unsealed(&unsealed_out.audit, 5, "ab", &mut sealed);
            // The intake form's snapshot may copy the event's members as they stand (their
            // order and spacing); the unsealed form's writes them one by one. The same object:
            let snapshot = AuditRecord::read(RecordFormat::Json, &sealed).unwrap().input_snapshot.into_owned();
            let object = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
            assert_eq!(object(&snapshot), object(&record.input_snapshot), "{line}");
            // and, given the same snapshot, the same chained record.
            record.input_snapshot = snapshot.into();
            assert_eq!(record.seal_and_write(5, "ab", RecordFormat::Json, &mut whole).unwrap(), hash, "{line}");
            assert_eq!(String::from_utf8(sealed).unwrap(), String::from_utf8(whole).unwrap());
        } else {
            assert_eq!(unsealed_out.audit, intake_out.audit, "{line}");
        }
    }
    assert_eq!(forms.len(), 2, "both forms were written: {forms:?}");
}

/// The reference example with its producer limited to 200,000 bytes a record (183,616 for a
/// record's value), and an event whose `merchant_category` (a snapshot field) is `merchant`.
fn limited(output: RecordFormat, merchant: &str) -> (Pipeline, String) {
    let mut config = example_config();
    config.kafka.producer.insert("message.max.bytes".into(), "200000".into());
    config.output.format = output;
    let mut event: serde_json::Value = serde_json::from_str(&sample()[0]).unwrap();
    event["merchant_category"] = merchant.into();
    (Pipeline::from_config(&config).unwrap(), event.to_string())
}

/// An event over the producer's limit, or one whose records would be, is dead-lettered
/// (`event_too_large`) with an audit record that leaves the snapshot out; one under it is
/// routed. The audit record gathered in Avro holds its snapshot unescaped: its size as the
/// chainer writes it in JSON counts the escapes.
#[test]
fn events_whose_records_the_producer_would_refuse_are_dead_lettered() {
    let mut out = Output::default();
    let audit_of = |out: &Output| AuditRecord::read(RecordFormat::Avro, &out.audit).unwrap().into_owned();

    let (p, line) = limited(RecordFormat::Json, &"n".repeat(190_000));
    let Verdict::Rejected(r) = p.process(Some(line.as_bytes()), source(), now(), &mut out) else { panic!() };
    assert_eq!(r.reason, RejectReason::EventTooLarge);
    assert!(r.message.contains("the event would be") && r.message.contains("left out"), "{}", r.message);
    let audit = audit_of(&out);
    assert_eq!((audit.action.as_ref(), audit.decision.as_ref()), ("dead_letter", "event_too_large"));
    assert_eq!(audit.event_id, "payments/2/41", "not decoded: the record's position names it");

    // 120 kB of `\"` in the event and in the routed record; twice that in the chained JSON.
    let (p, line) = limited(RecordFormat::Json, &"\"".repeat(60_000));
    let Verdict::Rejected(r) = p.process(Some(line.as_bytes()), source(), now(), &mut out) else { panic!() };
    assert_eq!(r.reason, RejectReason::EventTooLarge);
    assert!(r.message.contains("its audit record would be"), "{}", r.message);
    let audit = audit_of(&out);
    assert_eq!(audit.event_id, serde_json::from_str::<serde_json::Value>(&line).unwrap()["event_id"].as_str().unwrap());
    assert!(out.audit.len() < 2_000, "the snapshot is left out: {} bytes", out.audit.len());

    // Chained as Avro, the same snapshot is not escaped, and fits.
    let (p, line) = limited(RecordFormat::Avro, &"\"".repeat(60_000));
    assert!(matches!(p.process(Some(line.as_bytes()), source(), now(), &mut out), Verdict::Routed { .. }));
    // Nothing to escape: it fits as JSON too.
    let (p, line) = limited(RecordFormat::Json, &"n".repeat(120_000));
    assert!(matches!(p.process(Some(line.as_bytes()), source(), now(), &mut out), Verdict::Routed { .. }));
}

#[test]
fn json_escape_growth_counts_what_escaping_adds() {
    for text in ["plain", "q\"uote", "back\\slash", "line\nbreak\t", "\u{1}\u{1f}", "Café"] {
        let escaped = serde_json::to_string(text).unwrap();
        assert_eq!(text.len() + json_escape_growth(text.as_bytes()) + 2, escaped.len(), "{text:?}");
    }
}
