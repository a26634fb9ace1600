//! The reviewer gateway on a real broker, beside a real router on the reference example: a
//! reviewer lists only their queues with redacted fields, claims and decides, the decision is
//! joined into `tollgate.resolved`, a high-impact case is resolved only after a second sign-off,
//! every read and action is on the audit topic, the webhook hears about sync reviews, and a
//! restarted gateway rebuilds its view (claims included) from Kafka.

mod common;

use common::{create_topics, produce, Broker, Collector, GatewayProcess, RouterProcess, Topics, WebhookReceiver};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tollgate_schemas::{AuditRecord, RecordFormat, ResolvedEvent};

/// A token minted by the CLI, as the README shows.
fn token(reviewer: &str, role: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["gateway", "--config"])
        .arg(std::path::Path::new(common::EXAMPLE_DIR).join("gateway.toml"))
        .args(["token", "--reviewer", reviewer, "--role", role, "--ttl", "10m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    page["cases"].as_array().unwrap().iter().map(|c| c["event_id"].as_str().unwrap().to_owned()).collect()
}

/// Polls the sync queue until it lists `n` cases.
fn wait_for_cases(gateway: &GatewayProcess, token: &str, queue: &str, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, page) = gateway.call("GET", &format!("/v1/queues/{queue}/cases"), token, None, None);
        assert_eq!(status, 200, "{page}");
        if page["total"].as_u64() == Some(n as u64) {
            return page;
        }
        assert!(Instant::now() < deadline, "{queue} never listed {n} cases: {page}\n{}", gateway.log_text());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn reviewers_decide_through_the_gateway_and_the_router_joins_their_decisions() {
    let broker = Broker::get();
    let topics = Topics::new("gateway");
    let state_topic = format!("{}.gateway-state", topics.group);
    create_topics(&broker.addr, &[&topics.input], 3);
    let _router = RouterProcess::spawn(&topics, &broker.addr, &[]);
    let webhook = WebhookReceiver::start();
    let webhook_env = [("TOLLGATE__WEBHOOK__URL", webhook.url.as_str())];
    let mut gateway = GatewayProcess::spawn(&topics, &broker.addr, &state_topic, &webhook_env);
    gateway.wait_ready(Duration::from_secs(120));
    let mut out = Collector::new(&broker.addr, &[&topics.resolved, &topics.audit]);
    produce(&broker.addr, &topics.input, &common::sample_records());

    let (ana, triage) = (token("ana", "fraud_analyst"), token("tom", "async_triage"));
    // The reference sample sends six events to sync review and five to async review.
    let page = wait_for_cases(&gateway, &ana, "sync_review", 6);
    wait_for_cases(&gateway, &ana, "async_review", 5);
    // By impact (amount × risk): pay-0009 (553) first.
    assert_eq!(ids(&page), ["pay-0009", "pay-0006", "pay-0005", "pay-0004", "pay-0007", "pay-0008"]);
    for case in page["cases"].as_array().unwrap() {
        assert_eq!(case["fields"]["account_id"], "[redacted]", "{case}");
        assert!(case["fields"]["amount"].is_number());
    }
    // The async-only role sees no sync case.
    let (status, refused) = gateway.call("GET", "/v1/queues/sync_review/cases", &triage, None, None);
    assert_eq!((status, refused["error"].as_str()), (403, Some("queue_forbidden")));
    let (_, mine) = gateway.call("GET", "/v1/cases?limit=100", &triage, None, None);
    assert!(mine["cases"].as_array().unwrap().iter().all(|c| c["queue"] == "async_review"));

    // Ana opens, claims and rejects pay-0006.
    let (status, case) = gateway.call("GET", "/v1/cases/pay-0006", &ana, None, None);
    assert_eq!(
        (status, case["prediction"].as_str(), case["rule"].as_str()),
        (200, Some("reject"), Some("sync-review"))
    );
    assert_eq!(case["policy_version"], "payments-2026.11.1");
    assert_eq!(gateway.call("POST", "/v1/cases/pay-0006/claim", &ana, None, None).0, 200);
    let decision = json!({"action": "reject", "rationale": "card reported stolen"});
    let (status, answer) =
        gateway.call("POST", "/v1/cases/pay-0006/decision", &ana, Some(decision.clone()), Some("k-1"));
    assert_eq!((status, answer["status"].as_str()), (202, Some("submitted")), "{answer}");
    let (_, again) = gateway.call("POST", "/v1/cases/pay-0006/decision", &ana, Some(decision), Some("k-1"));
    assert_eq!(again["replayed"], true);

    // pay-0009 is high-impact: two senior analysts.
    let (sam, sue) = (token("sam", "senior_analyst"), token("sue", "senior_analyst"));
    assert_eq!(gateway.call("POST", "/v1/cases/pay-0009/claim", &sam, None, None).0, 200);
    let approve = json!({"action": "approve", "rationale": "known traveller, verified by phone"});
    let (_, first) = gateway.call("POST", "/v1/cases/pay-0009/decision", &sam, Some(approve), None);
    assert_eq!(first["status"], "awaiting_signoff", "{first}");
    let (status, own) = gateway.call("POST", "/v1/cases/pay-0009/signoff", &sam, Some(json!({"confirm": true})), None);
    assert_eq!((status, own["error"].as_str()), (403, Some("own_decision")));
    let (status, signed) =
        gateway.call("POST", "/v1/cases/pay-0009/signoff", &sue, Some(json!({"confirm": true})), None);
    assert_eq!((status, signed["status"].as_str()), (202, Some("submitted")), "{signed}");

    // The router joins both decisions.
    out.until("both resolutions", Duration::from_secs(60), |c| {
        c.iter().filter(|r| r.topic == topics.resolved).count() >= 2
    });
    let resolved: Vec<ResolvedEvent<'static, Value>> = out
        .on(&topics.resolved)
        .iter()
        .map(|c| ResolvedEvent::from_json(c.value.as_deref().unwrap()).unwrap())
        .collect();
    let r6 = resolved.iter().find(|r| r.event_id == "pay-0006").expect("pay-0006 resolved");
    assert_eq!((r6.actor.as_ref(), r6.outcome.as_str(), r6.overridden), ("ana", "rejected", false));
    assert_eq!((r6.rationale.as_ref(), r6.actor_role.as_deref()), ("card reported stolen", Some("fraud_analyst")));
    let r9 = resolved.iter().find(|r| r.event_id == "pay-0009").expect("pay-0009 resolved");
    assert_eq!(
        (r9.actor.as_ref(), r9.second_signoff.as_deref(), r9.outcome.as_str()),
        ("sam", Some("sue"), "approved")
    );
    assert!(r9.overridden, "approving a risk-0.7 case overrides the model");
    assert_eq!(resolved.len(), 2, "the retried decision was written once");

    // The audit trail holds the gateway's reads and actions beside the router's records.
    out.until("the join's audit records", Duration::from_secs(30), |c| {
        c.iter().filter(|r| r.topic == topics.audit).any(|r| {
            let a = AuditRecord::read(RecordFormat::Json, r.value.as_deref().unwrap()).unwrap();
            a.event_id == "pay-0009" && a.action == "review_decision"
        })
    });
    let trail: Vec<String> = out
        .on(&topics.audit)
        .iter()
        .map(|c| AuditRecord::read(RecordFormat::Json, c.value.as_deref().unwrap()).unwrap())
        .filter(|a| a.event_id == "pay-0006")
        .map(|a| format!("{}:{}", a.actor, a.action))
        .collect();
    for step in [
        "policy:route",
        "ana:case_listed",
        "ana:case_read",
        "ana:case_claim",
        "ana:decision_submitted",
        "ana:review_decision",
    ] {
        assert!(trail.contains(&step.to_owned()), "{step} missing from {trail:?}");
    }

    // The webhook heard about the sync cases.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !webhook.bodies().iter().any(|b| b.contains("pay-0005")) {
        assert!(Instant::now() < deadline, "no webhook for pay-0005: {:?}\n{}", webhook.bodies(), gateway.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let body: Value = serde_json::from_str(&webhook.bodies()[0]).unwrap();
    assert!(body["text"].as_str().unwrap().contains("needs a sync review"), "{body}");

    // A claim survives a restart; the resolved cases stay out of the rebuilt queue.
    let ben = token("ben", "fraud_analyst");
    assert_eq!(gateway.call("POST", "/v1/cases/pay-0005/claim", &ben, None, None).0, 200);
    assert!(gateway.terminate(Duration::from_secs(20)).success());
    let mut gateway = GatewayProcess::spawn(&topics, &broker.addr, &state_topic, &[]);
    gateway.wait_ready(Duration::from_secs(120));
    let page = wait_for_cases(&gateway, &ana, "sync_review", 4);
    assert_eq!(ids(&page), ["pay-0005", "pay-0004", "pay-0007", "pay-0008"]);
    assert_eq!(page["cases"][0]["claim"]["reviewer_id"], "ben");
    let (status, taken) = gateway.call("POST", "/v1/cases/pay-0005/claim", &ana, None, None);
    assert_eq!((status, taken["error"].as_str()), (409, Some("claimed_by_other")));
    let (status, _) = gateway.call("POST", "/v1/cases/pay-0006/claim", &ana, None, None);
    assert_eq!(status, 409, "a resolved case cannot be claimed");
}

/// Every read and action of the gateway is written to Kafka before it is answered, so with no
/// broker answering it can only answer 503 after a timeout: it reports not ready (`/readyz` and
/// `tollgate_gateway_ready`) until a broker answers again.
///
/// The outage is a frozen broker that keeps its topics, as an Apache Kafka cluster does across
/// an outage. A new, empty broker on the same address (the test broker keeps everything in
/// memory) is not used: fetching topics it does not know can crash librdkafka 2.12.1 (README,
/// "Status").
#[test]
fn the_gateway_is_not_ready_while_no_broker_answers() {
    let broker = Broker::private();
    let topics = Topics::new("gateway-down");
    let state_topic = format!("{}.gateway-state", topics.group);
    let mut gateway = GatewayProcess::spawn(&topics, &broker.addr, &state_topic, &[]);
    gateway.wait_ready(Duration::from_secs(120));
    let wait_for = |gateway: &mut GatewayProcess, want: (u16, bool), what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = gateway.child.try_wait().unwrap() {
                panic!("{what}: the gateway exited with {status}\n{}", gateway.log_text());
            }
            let metrics = common::http_get(&gateway.addr, "/metrics").1;
            let seen = (
                common::http_get(&gateway.addr, "/readyz").0,
                metrics.lines().any(|l| l == "tollgate_gateway_ready 1"),
            );
            if seen == want {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {seen:?}\n{}", gateway.log_text());
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    wait_for(&mut gateway, (200, true), "the gateway's metric did not follow /readyz");

    broker.pause();
    wait_for(&mut gateway, (503, false), "the gateway stayed ready with its broker not answering");
    assert!(gateway.log_text().contains("No Kafka broker answers"), "{}", gateway.log_text());

    broker.resume();
    wait_for(&mut gateway, (200, true), "the gateway did not become ready again");
    assert!(gateway.log_text().contains("Kafka answers again"), "{}", gateway.log_text());
    // A read is audited to Kafka before it is answered: it goes through again.
    let ana = token("ana", "fraud_analyst");
    let (status, page) = gateway.call("GET", "/v1/queues/sync_review/cases", &ana, None, None);
    assert_eq!(status, 200, "{page}\n{}", gateway.log_text());
}

/// An action whose transaction cannot complete (the broker stops answering while it is under
/// way) fails, and the gateway takes actions again once the broker answers. Its record times
/// out, and the abort then waits for a producer epoch bump that the test broker does not give:
/// left so, the producer refused every later transaction (each abort timing out) until the
/// gateway restarted. The gateway now makes a new transactional producer, which ends it.
#[test]
fn an_action_cut_short_by_a_frozen_broker_does_not_block_later_ones() {
    let broker = Broker::private();
    let topics = Topics::new("gateway-stall");
    let state_topic = format!("{}.gateway-state", topics.group);
    create_topics(&broker.addr, &[&topics.input], 3);
    let _router = RouterProcess::spawn(&topics, &broker.addr, &[]);
    let mut gateway = GatewayProcess::spawn(&topics, &broker.addr, &state_topic, &[]);
    gateway.wait_ready(Duration::from_secs(120));
    produce(&broker.addr, &topics.input, &common::sample_records());
    let ana = token("ana", "fraud_analyst");
    wait_for_cases(&gateway, &ana, "sync_review", 6);

    broker.pause();
    let (status, answer) = gateway.call("POST", "/v1/cases/pay-0006/claim", &ana, None, None);
    broker.resume();
    assert!(status >= 500, "{status} {answer}");
    gateway.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = gateway.call("POST", "/v1/cases/pay-0005/claim", &ana, None, None);
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {answer}\n{}", gateway.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
}
