//! `processing.guarantee = "exactly_once"` on a real broker: outputs and input offsets commit
//! in one transaction per batch, so a restarted router resumes exactly after what it committed.
//!
//! nisshi 0.6.0 commits transactions and their offsets but still shows aborted records to
//! read_committed consumers, so the abort path is covered on librdkafka's mock cluster
//! (router/src/kafka/tests.rs), not here.

mod common;

use common::{create_topics, produce, Broker, Collector, RouterProcess, TestRecord, Topics};
use std::collections::HashMap;
use std::time::Duration;

fn events(prefix: &str, n: usize) -> Vec<TestRecord> {
    (0..n)
        .map(|i| {
            let e = serde_json::json!({
                "event_id": format!("{prefix}-{i}"), "account_id": format!("acct-{}", i % 50), "amount": 10.0 + i as f64,
                "currency": "EUR", "merchant_category": "grocery", "country": "DE",
                "risk_score": (i % 100) as f64 / 100.0, "model_confidence": 0.9, "model_version": "m"
            });
            (Some(format!("acct-{}", i % 50).into_bytes()), Some(e.to_string().into_bytes()))
        })
        .collect()
}

#[test]
fn transactions_commit_outputs_and_offsets_together() {
    let broker = Broker::get();
    let topics = Topics::new("eos");
    create_topics(&broker.addr, &[&topics.input], 3);
    let env = [
        ("TOLLGATE__PROCESSING__GUARANTEE", "exactly_once"),
        ("TOLLGATE__PROCESSING__BATCH_SIZE", "200"),
        ("TOLLGATE__REVIEW__JOIN", "false"),
    ];
    produce(&broker.addr, &topics.input, &events("first", 3_000));
    let mut router = RouterProcess::spawn(&topics, &broker.addr, &env);
    let mut out = Collector::new(&broker.addr, &topics.outputs());
    let routed = |r: &[common::Collected]| r.iter().filter(|c| topics.route_of(&c.topic).is_some()).count();
    out.until("the first 3000 events", Duration::from_secs(90), |r| routed(r) >= 3_000);
    assert!(router.terminate(Duration::from_secs(30)).success(), "{}", router.log_text());
    assert!(router.log_text().contains("Routing exactly once"), "{}", router.log_text());

    // Restart and route more: the new instance starts at the offsets the transactions committed.
    produce(&broker.addr, &topics.input, &events("second", 1_000));
    let mut again = RouterProcess::spawn(&topics, &broker.addr, &env);
    out.until("the next 1000 events", Duration::from_secs(90), |r| routed(r) >= 4_000);
    // Audit records reach the trail through the audit chainer, shortly after.
    out.until("every audit record", Duration::from_secs(60), |r| {
        r.iter().filter(|c| c.topic == topics.audit).count() >= 4_000
    });
    out.poll_for(Duration::from_secs(2));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for c in out.records.iter().filter(|c| topics.route_of(&c.topic).is_some()) {
        *counts.entry(c.json()["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(counts.len(), 4_000);
    assert!(counts.values().all(|n| *n == 1), "every event routed once across the restart");
    let audits = out.on(&topics.audit).len();
    assert_eq!(audits, 4_000, "one audit record per event: exactly once through the intake and the chainer");
    assert!(again.terminate(Duration::from_secs(30)).success());
}
