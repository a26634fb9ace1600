//! The review loop on a real broker: human decisions join the events waiting in review, SLA
//! tiers escalate and fall back, unjoinable decisions are dead-lettered, and pending reviews
//! survive a router restart.

mod common;

use common::{create_topics, produce, Broker, Collected, Collector, RouterProcess, TestRecord, Topics};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_router::config::{Fallback, HumanDuration, RouterConfig};
use tollgate_schemas::{EscalationRecord, RecordFormat, ResolvedEvent, RoutedRecord};

fn sample() -> Vec<serde_json::Value> {
    common::sample_events()
}

fn decision(event_id: &str, action: &str, id: &str) -> TestRecord {
    let d = serde_json::json!({
        "decision_id": id, "event_id": event_id, "reviewer_id": "ana", "reviewer_role": "fraud_analyst",
        "action": action, "rationale": format!("{action} after checking"), "decided_at": now_ms(), "second_signoff": null
    });
    (Some(event_id.as_bytes().to_vec()), Some(d.to_string().into_bytes()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

struct Running {
    rt: tokio::runtime::Runtime,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), tollgate_router::RouterError>>,
}

fn start(config: RouterConfig) -> Running {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = CancellationToken::new();
    let handle = rt.spawn(tollgate_router::run(config, stop.clone()));
    Running { rt, stop, handle }
}

impl Running {
    fn stop(self) {
        self.stop.cancel();
        self.rt.block_on(self.handle).unwrap().expect("router stops cleanly");
    }
}

fn ids_on(out: &Collector, topic: &str) -> Vec<String> {
    out.on(topic)
        .iter()
        .map(|c| RoutedRecord::from_json(c.value.as_deref().unwrap()).unwrap().event_id.to_string())
        .collect()
}

fn resolved(out: &[&Collected]) -> Vec<ResolvedEvent<'static, serde_json::Value>> {
    out.iter().map(|c| ResolvedEvent::from_json(c.value.as_deref().unwrap()).unwrap()).collect()
}

#[test]
fn decisions_join_and_sla_tiers_escalate_and_fall_back() {
    let broker = Broker::get();
    let topics = Topics::new("review");
    create_topics(&broker.addr, &[&topics.input], 3);
    let mut config = topics.config(&broker.addr);
    config.review.sync_review.tiers = vec![HumanDuration::secs(3); 3];
    config.review.sync_review.fallback = Fallback::Reject;
    config.review.decision_grace = HumanDuration::secs(2);
    config.review.tick = HumanDuration(Duration::from_millis(200));
    let running = start(config);
    produce(&broker.addr, &topics.input, &common::sample_records());
    let mut out = Collector::new(
        &broker.addr,
        &[
            &topics.sync_review,
            &topics.async_review,
            &topics.resolved,
            &topics.escalations,
            &topics.dead_letter,
            &topics.audit,
        ],
    );
    out.until("the review routes", Duration::from_secs(60), |r| {
        r.iter().filter(|c| c.topic == topics.sync_review || c.topic == topics.async_review).count() >= 11
    });
    let sync = ids_on(&out, &topics.sync_review);
    let asynch = ids_on(&out, &topics.async_review);
    assert_eq!((sync.len(), asynch.len()), (6, 5));
    let events: std::collections::HashMap<String, serde_json::Value> =
        sample().into_iter().map(|e| (e["event_id"].as_str().unwrap().to_owned(), e)).collect();

    // Decide: approve an async case, reject a sync case, escalate another sync case; repeat the
    // approval (idempotent), and decide an event that does not exist.
    let (approve, reject, escalate) = (&asynch[0], &sync[0], &sync[1]);
    produce(
        &broker.addr,
        &topics.decisions,
        &[
            decision(approve, "approve", "d-1"),
            decision(reject, "reject", "d-2"),
            decision(escalate, "escalate", "d-3"),
            decision(approve, "approve", "d-1"),
            decision("no-such-event", "approve", "d-4"),
        ],
    );
    out.until("both decisions resolved", Duration::from_secs(60), |r| {
        r.iter().filter(|c| c.topic == topics.resolved).count() >= 2
    });
    let first = resolved(&out.on(&topics.resolved));
    let by_id = |id: &str| first.iter().find(|r| r.event_id == id).unwrap_or_else(|| panic!("{id} not resolved"));
    let a = by_id(approve);
    assert_eq!((a.outcome.as_str(), a.actor.as_ref(), a.tier), ("approved", "ana", 1));
    assert_eq!(a.event, events[approve.as_str()], "the original event is joined");
    assert!(a.sla_met);
    let r = by_id(reject);
    assert_eq!(r.outcome.as_str(), "rejected");
    assert_eq!(
        r.recommendation.as_str(),
        if events[reject.as_str()]["risk_score"].as_f64().unwrap() >= 0.5 { "rejected" } else { "approved" }
    );
    assert_eq!(r.overridden, r.recommendation != r.outcome);

    // The other four sync cases (and the escalated one) climb the tiers, then the reject
    // fallback resolves them by policy timeout.
    out.until("every sync case resolved", Duration::from_secs(60), |rs| {
        rs.iter().filter(|c| c.topic == topics.resolved).count() >= 2 + 5
    });
    out.poll_for(Duration::from_millis(500));
    let all = resolved(&out.on(&topics.resolved));
    assert_eq!(all.len(), 7, "one resolution each, the repeated approval changed nothing");
    for id in &sync[1..] {
        let t = all.iter().find(|r| &r.event_id == id).unwrap();
        assert_eq!((t.outcome.as_str(), t.actor.as_ref(), t.action), ("rejected", "policy_timeout", None), "{id}");
        assert_eq!(t.tier, 3);
        assert!(!t.sla_met);
    }
    let escalations: Vec<EscalationRecord> = out
        .on(&topics.escalations)
        .iter()
        .map(|c| EscalationRecord::read(RecordFormat::Json, c.value.as_deref().unwrap()).unwrap())
        .collect();
    let reviewer = escalations.iter().filter(|e| e.actor == "ana").count();
    assert_eq!(reviewer, 1, "one reviewer escalation");
    for id in &sync[2..] {
        let tiers: Vec<_> =
            escalations.iter().filter(|e| &e.event_id == id).map(|e| (e.from_tier, e.to_tier)).collect();
        assert_eq!(tiers, [(1, 2), (2, 3)], "{id}");
    }
    // The decision for an unknown event waited for its grace period, then was dead-lettered.
    let dead = out.on(&topics.dead_letter);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header(tollgate_schemas::headers::ERROR_REASON), "unknown_event");
    // Every human action and timeout is audited (once the chainer has caught up).
    out.until("every action and timeout audited", Duration::from_secs(30), |rs| {
        let chained = |action: &str| {
            rs.iter()
                .filter(|c| c.topic == topics.audit)
                .filter_map(|c| tollgate_schemas::AuditRecord::read(RecordFormat::Json, c.value.as_deref()?).ok())
                .filter(|a| a.action == action)
                .count()
        };
        chained("timeout_fallback") >= 5 && chained("decision_unjoined") >= 1
    });
    out.poll_for(Duration::from_millis(300));
    let audits: Vec<_> = out
        .on(&topics.audit)
        .iter()
        .map(|c| tollgate_schemas::AuditRecord::read(RecordFormat::Json, c.value.as_deref().unwrap()).unwrap())
        .collect();
    let count = |action: &str| audits.iter().filter(|a| a.action == action).count();
    assert_eq!(count("review_decision"), 2);
    assert_eq!(count("review_escalate"), 1);
    assert_eq!(count("timeout_fallback"), 5);
    assert_eq!(count("decision_unjoined"), 1);
    running.stop();
}

#[test]
fn pending_reviews_survive_a_restart() {
    let broker = Broker::get();
    let topics = Topics::new("restart");
    create_topics(&broker.addr, &[&topics.input], 3);
    let config = topics.config(&broker.addr);
    let running = start(config.clone());
    produce(&broker.addr, &topics.input, &common::sample_records());
    let events: std::collections::HashMap<String, serde_json::Value> =
        sample().into_iter().map(|e| (e["event_id"].as_str().unwrap().to_owned(), e)).collect();
    let mut out = Collector::new(&broker.addr, &[&topics.async_review, &topics.resolved, &topics.changelog]);
    out.until("the async cases and their changelog entries", Duration::from_secs(60), |r| {
        r.iter().filter(|c| c.topic == topics.async_review).count() >= 5
            && r.iter().filter(|c| c.topic == topics.changelog).count() >= 11
    });
    let asynch = ids_on(&out, &topics.async_review);
    produce(&broker.addr, &topics.decisions, &[decision(&asynch[0], "approve", "r-1")]);
    out.until("the first resolution", Duration::from_secs(60), |r| r.iter().any(|c| c.topic == topics.resolved));
    running.stop();

    // A new router process state: everything it knows comes from the changelog. With no memory
    // for events, the resolution reads its original event back from the changelog.
    let mut config = config;
    config.review.event_cache_mib = 0;
    let running = start(config);
    produce(
        &broker.addr,
        &topics.decisions,
        &[decision(&asynch[1], "reject", "r-2"), decision(&asynch[0], "approve", "r-1")],
    );
    out.until("the resolution after the restart", Duration::from_secs(60), |r| {
        r.iter().filter(|c| c.topic == topics.resolved).count() >= 2
    });
    out.poll_for(Duration::from_secs(1));
    let all = resolved(&out.on(&topics.resolved));
    assert_eq!(all.len(), 2, "the repeated decision for the case resolved before the restart changed nothing");
    let after = all.iter().find(|r| r.event_id == asynch[1]).unwrap();
    assert_eq!(after.outcome.as_str(), "rejected");
    assert_eq!(after.queue.as_str(), "async_review");
    assert_eq!(after.event, events[asynch[1].as_str()], "the original event came back from the changelog");
    let before = all.iter().find(|r| r.event_id == asynch[0]).unwrap();
    assert_eq!(before.event, events[asynch[0].as_str()], "the original event was kept in memory");
    // Each run marked the states it wrote as its own (it passes over them when it reads them
    // back); the second run applied the first run's, which is how it knew the repeated decision.
    let writers: std::collections::BTreeSet<String> = out
        .on(&topics.changelog)
        .iter()
        .filter(|c| c.key.as_deref().is_some_and(|k| k.ends_with(b"/state")))
        .map(|c| c.header(tollgate_schemas::headers::STATE_WRITER).to_owned())
        .collect();
    assert_eq!(writers.len(), 2, "{writers:?}");
    assert!(writers.iter().all(|w| w.len() == 16), "{writers:?}");
    running.stop();
}

#[test]
fn post_verify_events_proceed_at_once_and_a_reject_rolls_them_back() {
    let broker = Broker::get();
    let topics = Topics::new("postverify");
    create_topics(&broker.addr, &[&topics.input], 3);
    let mut config = topics.config(&broker.addr);
    config.review.async_review.post_verify = true;
    config.review.audit_sample_rate = 1.0;
    let running = start(config);
    produce(&broker.addr, &topics.input, &common::sample_records());
    let mut out =
        Collector::new(&broker.addr, &[&topics.auto_commit, &topics.async_review, &topics.resolved, &topics.rollbacks]);
    // 6 auto-committed events, all sampled; 5 async (post-verify) events, pre-accepted.
    out.until("auto-commit and async-review records", Duration::from_secs(60), |r| {
        r.iter().filter(|c| c.topic == topics.auto_commit).count() >= 11
            && r.iter().filter(|c| c.topic == topics.async_review).count() >= 11
    });
    let routed = |topic: &str| -> Vec<(String, String)> {
        out.on(topic)
            .iter()
            .map(|c| {
                let r = RoutedRecord::from_json(c.value.as_deref().unwrap()).unwrap();
                (r.event_id.to_string(), r.rule.to_string())
            })
            .collect()
    };
    let reviews = routed(&topics.async_review);
    let samples: Vec<_> = reviews.iter().filter(|(_, rule)| rule == "audit-sample").map(|(id, _)| id.clone()).collect();
    let post_verify: Vec<_> =
        reviews.iter().filter(|(_, rule)| rule != "audit-sample").map(|(id, _)| id.clone()).collect();
    assert_eq!((samples.len(), post_verify.len()), (6, 5));
    let committed: Vec<_> = routed(&topics.auto_commit).into_iter().map(|(id, _)| id).collect();
    assert!(post_verify.iter().all(|id| committed.contains(id)), "post-verify events proceed at once");

    produce(
        &broker.addr,
        &topics.decisions,
        &[
            decision(&post_verify[0], "reject", "pv-1"),
            decision(&samples[0], "reject", "pv-2"),
            decision(&samples[1], "approve", "pv-3"),
        ],
    );
    out.until("three resolutions and two rollbacks", Duration::from_secs(60), |r| {
        r.iter().filter(|c| c.topic == topics.resolved).count() >= 3
            && r.iter().filter(|c| c.topic == topics.rollbacks).count() >= 2
    });
    out.poll_for(Duration::from_millis(500));
    let rollbacks: Vec<String> =
        resolved(&out.on(&topics.rollbacks)).into_iter().map(|r| r.event_id.to_string()).collect();
    assert_eq!(rollbacks.len(), 2);
    assert!(rollbacks.contains(&post_verify[0]) && rollbacks.contains(&samples[0]));
    running.stop();
}

/// A router whose review partitions move (a second router joins, then stops and leaves them
/// all to the first) replays each assigned changelog partition up to where it ended at the
/// assignment, and every waiting case is then decided. The ends are asked through its
/// producer: its join's consumer fetches with a long wait here (20 s), and the broker holds a
/// fetch that long, so a question on the consumer's own connection would wait behind the fetch
/// in flight when the partitions moved (likely, not certain: that fetch may have been answered
/// just before) and run out of time, leaving the partitions to be replayed until the changelog
/// went quiet.
#[test]
fn a_router_taking_over_review_partitions_knows_where_their_changelog_ends() {
    let broker = Broker::get();
    let topics = Topics::new("review-takeover");
    create_topics(&broker.addr, &[&topics.input], 3);
    let config = topics.config_file(&[]);
    common::set_consumer(&config, "review_join", "fetch.wait.max.ms", "20000");
    let mut first = RouterProcess::spawn_at(&config, &topics, &broker.addr, &[]);
    first.wait_ready(Duration::from_secs(60));
    // Two instances on one host need their own transactional ids (the default is per host).
    let second_env = [("TOLLGATE__PROCESSING__TRANSACTIONAL_ID", "second-router")];
    let mut second = RouterProcess::spawn_at(&config, &topics, &broker.addr, &second_env);
    let holds_changelog = |log: &str| {
        log.lines().any(|l| l.contains("Partitions assigned.") && l.contains(&format!("\"{}\"", topics.changelog)))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !holds_changelog(&second.log_text()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the second router holds no changelog partition:\n{}",
            second.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    produce(&broker.addr, &topics.input, &common::sample_records());
    let mut out = Collector::new(&broker.addr, &[&topics.async_review, &topics.sync_review, &topics.resolved]);
    // The sample's cases for review: six sync, five async.
    let reviews = 11;
    out.until("every case in review", Duration::from_secs(90), |r| {
        r.iter().filter(|c| c.topic == topics.async_review || c.topic == topics.sync_review).count() >= reviews
    });
    let second_status = second.terminate(Duration::from_secs(60));
    assert!(second_status.success(), "{second_status}\n{}", second.log_text());

    let cases: Vec<String> = [&topics.async_review, &topics.sync_review].iter().flat_map(|t| ids_on(&out, t)).collect();
    let decisions: Vec<TestRecord> =
        cases.iter().enumerate().map(|(i, id)| decision(id, "approve", &format!("t-{i}"))).collect();
    produce(&broker.addr, &topics.decisions, &decisions);
    out.until("every case resolved", Duration::from_secs(180), |r| {
        r.iter().filter(|c| c.topic == topics.resolved).count() >= cases.len()
    });
    let status = first.terminate(Duration::from_secs(60));
    let log = first.log_text();
    assert!(status.success(), "{status}\n{log}");
    assert!(log.matches("Partitions assigned.").count() >= 2, "the first router took the partitions over:\n{log}");
    assert!(!log.contains("is unknown"), "a changelog partition's end was not had at the takeover:\n{log}");
    let mut resolved: Vec<String> =
        resolved(&out.on(&topics.resolved)).iter().map(|r| r.event_id.to_string()).collect();
    resolved.sort();
    let mut expected = cases.clone();
    expected.sort();
    assert_eq!(resolved, expected);
}
