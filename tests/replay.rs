//! `tollgate replay` on a real broker: the reference sample, recorded over two hours and routed
//! by the router, with reviewers' decisions joined into `tollgate.resolved`, replayed against a
//! tighter candidate policy. The figures are the hand-computed ones of the replay unit tests,
//! restricted to the events people reviewed.

mod common;

use common::{create_topics, produce, Broker, Collector, RouterProcess, Topics};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::process::Command;
use std::time::Duration;

const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn a_candidate_policy_is_compared_with_the_running_one_on_recorded_traffic() {
    let broker = Broker::get();
    let topics = Topics::new("replay");
    create_topics(&broker.addr, &[&topics.input], 3);
    let config = topics.config_file(&[]);
    // The sample, recorded over two hours (the record timestamps).
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    let start = now_ms() - 3 * HOUR;
    for (i, e) in common::sample_events().iter().enumerate() {
        let value = e.to_string();
        let key = e["account_id"].as_str().unwrap().to_owned();
        let record =
            BaseRecord::to(&topics.input).key(&key).payload(&value).timestamp(start + i as i64 * 2 * HOUR / 19);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let mut router = RouterProcess::spawn_at(&config, &topics, &broker.addr, &[]);
    let mut out = Collector::new(&broker.addr, &[&topics.sync_review, &topics.async_review, &topics.resolved]);
    out.until("the reviewed events", Duration::from_secs(90), |c| c.len() >= 11);
    let decisions: Vec<_> = [
        ("pay-0004", "reject"),
        ("pay-0005", "reject"),
        ("pay-0006", "approve"),
        ("pay-0007", "approve"),
        ("pay-0009", "reject"),
        ("pay-0012", "approve"),
        ("pay-0013", "reject"),
        ("pay-0014", "approve"),
    ]
    .iter()
    .map(|(id, action)| {
        let d = serde_json::json!({
            "decision_id": format!("d-{id}"), "event_id": id, "reviewer_id": "ana", "reviewer_role": "fraud_analyst",
            "action": action, "rationale": "checked", "decided_at": now_ms(), "second_signoff": null
        });
        (Some(id.as_bytes().to_vec()), Some(d.to_string().into_bytes()))
    })
    .collect();
    produce(&broker.addr, &topics.decisions, &decisions);
    out.until("eight resolutions", Duration::from_secs(60), |c| {
        c.iter().filter(|r| r.topic == topics.resolved).count() >= 8
    });
    assert!(router.terminate(Duration::from_secs(30)).success());

    // The candidate: sync review from risk 0.8, and risk ≥ 0.5 at least to async review.
    let current = std::fs::read_to_string(config.with_file_name("policy.toml")).unwrap();
    let candidate = config.with_file_name("candidate.toml");
    std::fs::write(
        &candidate,
        current
            .replace("version = \"payments-2026.11.1\"", "version = \"payments-2026.12.0\"")
            .replace("{ risk = { gte = 0.9 } }", "{ risk = { gte = 0.8 } }")
            + "\n[[rules]]\nname = \"watch-mid-risk\"\nroute = \"async_review\"\nall = [{ risk = { gte = 0.5 } }]\n",
    )
    .unwrap();
    let replay = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["replay", "--config"])
            .arg(&config)
            .arg("--policy")
            .arg(&candidate)
            .args(["--decisions", &topics.resolved, "--format", format, "--idle", "1500ms"])
            .envs(topics.env(&broker.addr, common::free_port()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let report: serde_json::Value = serde_json::from_str(&replay("json")).unwrap();
    assert_eq!((report["labels"].as_u64(), report["span_hours"].as_f64()), (Some(8), Some(2.0)));
    let (c, n) = (&report["current"], &report["candidate"]);
    let counts = |f: &serde_json::Value| -> Vec<u64> {
        f["routes"].as_array().unwrap().iter().map(|r| r[1].as_u64().unwrap()).collect()
    };
    assert_eq!(counts(c), [6, 5, 6, 3]);
    assert_eq!(counts(n), [3, 7, 7, 3]);
    assert_eq!(c["review_load_per_hour"], serde_json::json!([["sync_review", 3.0], ["async_review", 2.5]]));
    assert_eq!(n["review_load_per_hour"], serde_json::json!([["sync_review", 3.5], ["async_review", 3.5]]));
    // Only reviewed events have labels here: both policies review all eight; three overrides.
    assert_eq!((c["labelled_reviewed"].as_u64(), n["labelled_reviewed"].as_u64()), (Some(8), Some(8)));
    assert_eq!((c["override_rate"].as_f64(), n["override_rate"].as_f64()), (Some(0.375), Some(0.375)));
    let table = replay("table");
    assert!(table.contains("candidate payments-2026.12.0") && table.contains("+0.5"), "{table}");
    // Nothing was produced: the review topics hold only the router's records.
    out.poll_for(Duration::from_secs(2));
    assert_eq!(out.on(&topics.sync_review).len() + out.on(&topics.async_review).len(), 11);
}
