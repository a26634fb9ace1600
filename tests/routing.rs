//! The reference example on a real Kafka-protocol broker: every event lands on the route the
//! spec gives, keyed as it came in, with its audit record; bad input lands in the dead-letter
//! topic with its reason.

mod common;

use common::{
    create_topics, free_port, http_get, metric_value, produce, sample_records, Broker, Collector, RouterProcess,
    Topics, EXAMPLE_DIR,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_router::config::{InputFormat, RouterConfig};
use tollgate_schemas::routed::AvroBytes;
use tollgate_schemas::{headers, AuditRecord, RecordFormat, RoutedRecord};

/// The reference routing, straight from the spec (independent of the policy engine).
fn expected(risk: f64, conf: f64) -> &'static str {
    if risk > 0.95 {
        "auto_reject"
    } else if risk >= 0.9 || conf < 0.6 {
        "sync_review"
    } else if (0.6..0.85).contains(&conf) || (risk > 0.6 && risk < 0.9) {
        "async_review"
    } else {
        "auto_commit"
    }
}

fn sample() -> Vec<serde_json::Value> {
    common::sample_events()
}

/// Runs an in-process router on `config` while `body` runs, then stops it and checks it
/// stopped cleanly.
fn with_router<T>(config: RouterConfig, body: impl FnOnce() -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = CancellationToken::new();
    let router = rt.spawn(tollgate_router::run(config, stop.clone()));
    let result = body();
    stop.cancel();
    rt.block_on(router).unwrap().expect("router stops cleanly");
    result
}

#[test]
fn reference_example_routes_every_event_as_specified() {
    let broker = Broker::get();
    let topics = Topics::new("routing");
    create_topics(&broker.addr, &[&topics.input], 3);
    let events = sample();
    let mut records = common::sample_records();
    // A keyless event: its output is keyed by its event id.
    let keyless = r#"{"event_id":"keyless-1","account_id":"a","amount":5,"currency":"EUR","merchant_category":"grocery","country":"DE","risk_score":0.02,"model_confidence":0.97,"model_version":"fraud-gbm-2026.10"}"#;
    records.push((None, Some(keyless.as_bytes().to_vec())));
    // Bad input, each with the reason it must be dead-lettered for.
    let bad: Vec<(&str, Option<&str>, &str)> = vec![
        ("bad-json", Some("{\"event_id\": \"x\", "), "malformed_json"),
        ("no-id", Some(r#"{"risk_score":0.2,"model_confidence":0.9,"model_version":"m"}"#), "missing_field"),
        (
            "out-of-range",
            Some(r#"{"event_id":"oor","risk_score":1.5,"model_confidence":0.9,"model_version":"m"}"#),
            "score_out_of_range",
        ),
        (
            "wrong-type",
            Some(r#"{"event_id":"wt","risk_score":"high","model_confidence":0.9,"model_version":"m"}"#),
            "invalid_field",
        ),
        ("tombstone", None, "empty_payload"),
    ];
    for (key, value, _) in &bad {
        records.push((Some(key.as_bytes().to_vec()), value.map(|v| v.as_bytes().to_vec())));
    }
    produce(&broker.addr, &topics.input, &records);

    let total = records.len();
    let mut config = topics.config(&broker.addr);
    let metrics = format!("127.0.0.1:{}", free_port());
    config.metrics.listen = metrics.parse().unwrap();
    let (out, exposition) = with_router(config, || {
        // The router creates the output topics; the collector waits for them.
        let mut out = Collector::new(&broker.addr, &topics.outputs());
        out.until("every routed, dead-letter and audit record", Duration::from_secs(90), |r| {
            r.iter().filter(|c| c.topic == topics.audit).count() >= total
                && r.iter().filter(|c| c.topic != topics.audit).count() >= total
        });
        // Anything extra would show up now.
        out.poll_for(Duration::from_millis(500));
        assert_eq!(http_get(&metrics, "/healthz").0, 200);
        assert_eq!(http_get(&metrics, "/readyz").0, 200, "a consuming router is ready");
        let (status, exposition) = http_get(&metrics, "/metrics");
        assert_eq!(status, 200);
        (out, exposition)
    });

    // Routed events: the right topic, the key they came with, headers, the full record.
    let mut routed: HashMap<String, &common::Collected> = HashMap::new();
    for t in topics.routes() {
        for c in out.on(t) {
            let rec = RoutedRecord::from_json(c.value.as_deref().unwrap()).unwrap();
            assert!(routed.insert(rec.event_id.to_string(), c).is_none(), "{} routed twice", rec.event_id);
        }
    }
    assert_eq!(routed.len(), events.len() + 1);
    let mut routes_seen = HashSet::new();
    for e in &events {
        let id = e["event_id"].as_str().unwrap();
        let c = routed.get(id).unwrap_or_else(|| panic!("{id} not routed"));
        let want = expected(e["risk_score"].as_f64().unwrap(), e["model_confidence"].as_f64().unwrap());
        assert_eq!(topics.route_of(&c.topic), Some(want), "{id}");
        routes_seen.insert(want);
        assert_eq!(c.key.as_deref(), Some(e["account_id"].as_str().unwrap().as_bytes()), "{id}: key preserved");
        assert_eq!(c.header(headers::ROUTE), want);
        assert_eq!(c.header(headers::POLICY_VERSION), "payments-2026.11.1");
        assert_eq!(c.header(headers::MODEL_VERSION), "fraud-gbm-2026.10");
        let rec = RoutedRecord::from_json(c.value.as_deref().unwrap()).unwrap();
        assert_eq!(&rec.event, e);
        assert_eq!(rec.route.as_str(), want);
        assert_eq!(rec.sla_deadline.is_some(), want.ends_with("review"));
    }
    assert_eq!(routes_seen.len(), 4, "all four routes exercised");
    assert_eq!(routed["keyless-1"].key.as_deref(), Some(&b"keyless-1"[..]));

    // Dead letters: original bytes, original key, reason and source in headers.
    let dead = out.on(&topics.dead_letter);
    assert_eq!(dead.len(), bad.len());
    for (key, value, reason) in &bad {
        let d = dead.iter().find(|d| d.key.as_deref() == Some(key.as_bytes())).unwrap_or_else(|| panic!("{key}"));
        assert_eq!(d.value.as_deref(), value.map(str::as_bytes), "{key}: original bytes");
        assert_eq!(d.header(headers::ERROR_REASON), *reason, "{key}");
        assert!(!d.header(headers::ERROR_MESSAGE).is_empty());
        assert_eq!(d.header(headers::SOURCE_TOPIC), topics.input);
        assert!(d.header(headers::SOURCE_OFFSET).parse::<i64>().is_ok());
        assert!(d.header(headers::SOURCE_PARTITION).parse::<i32>().is_ok());
    }

    // Audit: one record per input, matching the decision.
    let audits: Vec<AuditRecord> = out
        .on(&topics.audit)
        .iter()
        .map(|c| AuditRecord::read(RecordFormat::Json, c.value.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(audits.len(), total);
    for e in &events {
        let id = e["event_id"].as_str().unwrap();
        let a = audits.iter().find(|a| a.event_id == id).unwrap_or_else(|| panic!("no audit for {id}"));
        assert_eq!(a.action, "route");
        assert_eq!(a.decision, expected(e["risk_score"].as_f64().unwrap(), e["model_confidence"].as_f64().unwrap()));
        assert_eq!(a.policy_version.as_deref(), Some("payments-2026.11.1"));
    }
    assert_eq!(audits.iter().filter(|a| a.action == "dead_letter").count(), bad.len());

    // Metrics count what happened.
    for route in ["auto_commit", "async_review", "sync_review", "auto_reject"] {
        let routed_here = topics
            .routes()
            .iter()
            .filter(|t| topics.route_of(t) == Some(route))
            .map(|t| out.on(t).len())
            .sum::<usize>();
        let sample = format!("tollgate_events_total{{route=\"{route}\"}}");
        assert_eq!(metric_value(&exposition, &sample), Some(routed_here as f64), "{sample}");
    }
    for (_, _, reason) in &bad {
        let sample = format!("tollgate_dead_letter_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_value(&exposition, &sample), Some(1.0), "{sample}");
    }
    assert_eq!(metric_value(&exposition, "tollgate_routing_latency_seconds_count"), Some(total as f64));
    assert_eq!(metric_value(&exposition, "tollgate_risk_score_count"), Some((events.len() + 1) as f64));
    assert_eq!(metric_value(&exposition, "tollgate_ready"), Some(1.0));
    assert!(exposition.contains("tollgate_policy_info{policy_version=\"payments-2026.11.1\"} 1"));
}

/// Readiness follows the consumer group: the router is ready once its group has given every
/// routing loop an assignment. With two loops and one partition, one loop's assignment is
/// empty, which counts: the group has settled and the other loop routes everything.
#[test]
fn a_router_with_more_routing_loops_than_partitions_becomes_ready() {
    two_loops_on_one_partition_become_ready("ready", None);
}

/// The same under the cooperative assignor, whose rebalances assign and revoke incrementally
/// (rdkafka's rebalance callback calls `incremental_assign`): one loop takes the partition, the
/// other an empty assignment, and both count as ready. nisshi 0.6.0 runs the cooperative
/// protocol for such a group (both loops' consumers reported it when this test was written).
#[test]
fn readiness_follows_the_group_under_the_cooperative_assignor() {
    two_loops_on_one_partition_become_ready("ready-coop", Some("cooperative-sticky"));
}

fn two_loops_on_one_partition_become_ready(name: &str, assignor: Option<&str>) {
    let broker = Broker::get();
    let topics = Topics::new(name);
    create_topics(&broker.addr, &[&topics.input], 1);
    let events = sample();
    produce(&broker.addr, &topics.input, &common::sample_records());
    let mut config = topics.config(&broker.addr);
    config.processing.routing_threads = 2;
    if let Some(assignor) = assignor {
        config.kafka.consumer.insert("partition.assignment.strategy".into(), assignor.into());
    }
    let metrics = format!("127.0.0.1:{}", free_port());
    config.metrics.listen = metrics.parse().unwrap();
    let exposition = with_router(config, || {
        let mut out = Collector::new(&broker.addr, &topics.outputs());
        out.until("every event routed", Duration::from_secs(90), |r| {
            r.iter().filter(|c| topics.route_of(&c.topic).is_some()).count() >= events.len()
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&metrics, "/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "not ready a minute after routing every event");
            std::thread::sleep(Duration::from_millis(200));
        }
        out.poll_for(Duration::from_secs(1));
        let routed = out.records.iter().filter(|c| topics.route_of(&c.topic).is_some()).count();
        assert_eq!(routed, events.len(), "every event routed once");
        http_get(&metrics, "/metrics").1
    });
    assert_eq!(metric_value(&exposition, "tollgate_ready"), Some(1.0));
    let unsettled = r#"tollgate_consumer_group_unsettled_total{consumer="routing"}"#;
    assert_eq!(metric_value(&exposition, unsettled), Some(0.0), "{exposition}");
}

/// Avro input (Confluent framing) and Avro output, with routed records' headers turned off.
#[test]
fn avro_input_and_output_on_a_real_broker() {
    let broker = Broker::get();
    let topics = Topics::new("avro");
    create_topics(&broker.addr, &[&topics.input], 2);
    let schema_text = std::fs::read_to_string(Path::new(EXAMPLE_DIR).join("payment.avsc")).unwrap();
    let schema = apache_avro::Schema::parse_str(&schema_text).unwrap();
    let mut records = Vec::new();
    let mut originals = HashMap::new();
    for e in sample() {
        use apache_avro::types::Value;
        let fields = [
            "event_id",
            "account_id",
            "amount",
            "currency",
            "merchant_category",
            "country",
            "risk_score",
            "model_confidence",
            "model_version",
        ];
        let v = Value::Record(
            fields
                .iter()
                .map(|f| {
                    let j = &e[*f];
                    let v = j
                        .as_f64()
                        .filter(|_| j.is_number())
                        .map_or_else(|| Value::String(j.as_str().unwrap().into()), Value::Double);
                    (f.to_string(), v)
                })
                .collect(),
        );
        // Confluent framing: magic byte 0, schema id 7.
        let mut bytes = vec![0, 0, 0, 0, 7];
        bytes.extend(apache_avro::to_avro_datum(&schema, v).unwrap());
        originals.insert(
            e["event_id"].as_str().unwrap().to_owned(),
            (bytes.clone(), expected(e["risk_score"].as_f64().unwrap(), e["model_confidence"].as_f64().unwrap())),
        );
        records.push((Some(e["account_id"].as_str().unwrap().as_bytes().to_vec()), Some(bytes)));
    }
    records.push((Some(b"not-avro".to_vec()), Some(b"{\"event_id\":\"j\"}".to_vec())));
    produce(&broker.addr, &topics.input, &records);

    let mut config = topics.config(&broker.addr);
    config.input.format = InputFormat::AvroConfluent;
    config.input.avro_schema = Some("payment.avsc".into());
    config.input.confluent_schema_ids = vec![7];
    config.output.format = RecordFormat::Avro;
    // Routed records without their headers (their values are in the record); dead letters
    // keep theirs.
    config.output.headers = false;
    config.validate().unwrap();
    let out = with_router(config, || {
        let mut out = Collector::new(&broker.addr, &topics.outputs());
        out.until("every record", Duration::from_secs(90), |r| {
            r.iter().filter(|c| c.topic == topics.audit).count() >= records.len()
        });
        out.poll_for(Duration::from_millis(300));
        out
    });
    let mut seen = 0;
    for t in topics.routes() {
        for c in out.on(t) {
            let rec = RoutedRecord::<AvroBytes>::from_avro(c.value.as_deref().unwrap()).unwrap();
            let (bytes, route) = &originals[rec.event_id.as_ref()];
            assert_eq!(rec.event.0.as_ref(), bytes.as_slice(), "original bytes kept");
            assert_eq!(rec.route.as_str(), *route);
            assert_eq!(topics.route_of(&c.topic), Some(*route));
            assert!(c.headers.is_empty(), "output.headers = false: {:?}", c.headers);
            seen += 1;
        }
    }
    assert_eq!(seen, originals.len());
    let dead = out.on(&topics.dead_letter);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header(headers::ERROR_REASON), "schema_mismatch");
    for c in out.on(&topics.audit) {
        AuditRecord::read(RecordFormat::Avro, c.value.as_deref().unwrap()).expect("audit records are Avro too");
    }
}

/// Events whose records would be larger than the router's producer takes (its
/// `message.max.bytes`) are dead-lettered (`event_too_large`), not sent: a record the producer
/// refuses would stop the router at that event at every start. The dead letter carries the
/// payload when it fits, else says where the event is. Events after them are routed.
#[test]
fn events_too_large_to_write_are_dead_lettered_and_the_router_goes_on() {
    let broker = Broker::get();
    let topics = Topics::new("large");
    create_topics(&broker.addr, &[&topics.input], 3);
    let mut router = RouterProcess::spawn_with(&topics, &broker.addr, &[], &[("message.max.bytes", "200000")]);
    let event = |id: &str, field: &str, text: String| {
        let mut e = sample()[0].clone();
        e["event_id"] = id.into();
        e[field] = text.into();
        (Some(b"acct".to_vec()), Some(e.to_string().into_bytes()))
    };
    let mut records = vec![
        // Under the limit, and so are its records (a field the audit snapshot leaves out).
        event("fits", "notes", "n".repeat(150_000)),
        // Over the limit as it is: its dead letter leaves the payload out.
        event("too-large", "notes", "n".repeat(190_000)),
        // Under the limit, but its audit record's snapshot (which has this field) holds it as a
        // string, each quote escaped again: 240 kB.
        event("snapshot-too-large", "merchant_category", "\"".repeat(60_000)),
    ];
    records.extend(sample_records().into_iter().take(5));
    produce(&broker.addr, &topics.input, &records);
    let mut out = Collector::new(&broker.addr, &topics.outputs());
    let routed_ids = |r: &[common::Collected]| -> HashSet<String> {
        r.iter()
            .filter(|c| topics.route_of(&c.topic).is_some())
            .map(|c| c.json()["event_id"].as_str().unwrap().into())
            .collect()
    };
    let sampled: Vec<String> = sample().iter().take(5).map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
    out.until_showing(
        "the events around the large ones routed, and two dead letters",
        Duration::from_secs(90),
        || router.log_text(),
        |r| {
            let ids = routed_ids(r);
            ids.contains("fits")
                && sampled.iter().all(|s| ids.contains(s))
                && r.iter().filter(|c| c.topic == topics.dead_letter).count() >= 2
        },
    );
    let letters = out.on(&topics.dead_letter);
    assert_eq!(letters.len(), 2, "{}", router.log_text());
    for letter in &letters {
        assert_eq!(letter.header(headers::ERROR_REASON), "event_too_large");
    }
    let by_size = |n: usize| letters.iter().find(|l| l.value.as_ref().map_or(0, Vec::len) == n);
    let snapshot_event = records[2].1.as_ref().unwrap();
    assert!(by_size(snapshot_event.len()).is_some(), "the dead letter of an event that fits carries it");
    let omitted = by_size(0).expect("the dead letter of an event over the limit carries no payload");
    assert!(omitted.header(headers::ERROR_MESSAGE).contains("left out"), "{}", omitted.header(headers::ERROR_MESSAGE));
    // Every event has its audit record, the large ones without their snapshot.
    out.until("an audit record per event", Duration::from_secs(60), |r| {
        r.iter().filter(|c| c.topic == topics.audit).count() >= records.len()
    });
    assert_eq!(router.metric(r#"tollgate_dead_letter_total{reason="event_too_large"}"#), Some(2.0));
    assert!(router.child.try_wait().unwrap().is_none(), "the router exited:\n{}", router.log_text());
    assert!(router.terminate(Duration::from_secs(30)).success(), "{}", router.log_text());
}
