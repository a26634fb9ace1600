//! The exactly-once abort path and resumed transaction calls, on librdkafka's in-process mock
//! cluster: the test broker, nisshi, shows aborted records to read_committed consumers, so it
//! cannot prove the first, and slowing its answers at will takes the mock's round-trip setting.

use super::group::Member;
use crate::config::{Guarantee, RouterConfig};
use crate::pipeline::Pipeline;
use crate::telemetry::Telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext, Message};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 300;

/// The reference example's configuration on `cluster` (its topics created there, one
/// partition each), in group `group`, without the review join or the metrics server.
pub(crate) fn mock_config(cluster: &MockCluster<'_, impl ClientContext>, group: &str) -> RouterConfig {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments/router.toml");
    let mut config = RouterConfig::load(&example).unwrap();
    config.kafka.brokers = cluster.bootstrap_servers();
    config.kafka.create_topics = false;
    config.kafka.partitions = 1;
    config.kafka.group_id = group.into();
    config.review.join = false;
    config.metrics.enabled = false;
    config.validate().unwrap();
    for topic in config.topics.all().into_iter().chain([config.kafka.input_topic.as_str()]) {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    config
}

/// Produces `n` minimal events (ids `{prefix}-0` on, risks 0 to 0.99) to `topic`, all keyed
/// alike, and waits for their acknowledgement.
pub(crate) fn produce_events(brokers: &str, topic: &str, prefix: &str, n: usize) {
    let input: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for i in 0..n {
        let e = format!(
            r#"{{"event_id":"{prefix}-{i}","risk_score":{},"model_confidence":0.9,"model_version":"m"}}"#,
            (i % 100) as f64 / 100.0
        );
        input.send(BaseRecord::to(topic).key("k").payload(&e)).unwrap();
    }
    input.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn an_aborted_transaction_is_retried_and_its_outputs_appear_once() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let mut config = mock_config(&cluster, "eos-test");
    config.processing.guarantee = Guarantee::ExactlyOnce;
    config.processing.batch_size = 50;
    produce_events(&brokers, "payments", "e", EVENTS);
    // The router's first produce requests fail for good: its first transaction must abort.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD; 3]);

    let telemetry = Telemetry::new();
    let stop = CancellationToken::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pipeline = Pipeline::from_config(&config).unwrap();
    let router = rt.spawn(crate::run_with(config.clone(), pipeline, telemetry.clone(), stop.clone()));

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "eos-reader")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let routes = [
        &config.topics.auto_commit,
        &config.topics.async_review,
        &config.topics.sync_review,
        &config.topics.auto_reject,
    ];
    consumer.subscribe(&routes.map(String::as_str)).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.values().sum::<usize>() < EVENTS {
        if router.is_finished() {
            let result = rt.block_on(router).unwrap();
            panic!("the router stopped: {result:?}");
        }
        if Instant::now() >= deadline {
            let metrics = telemetry.render();
            let metrics: Vec<_> =
                metrics.lines().filter(|l| l.starts_with("tollgate_") && !l.contains("_bucket")).collect();
            stop.cancel();
            let result = rt.block_on(async { tokio::time::timeout(Duration::from_secs(45), router).await });
            panic!("saw {} of {EVENTS} events; router: {result:?}; metrics:\n{}", seen.len(), metrics.join("\n"));
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            *seen.entry(v["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    // Anything duplicated would arrive shortly.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            *seen.entry(v["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    stop.cancel();
    rt.block_on(router).unwrap().unwrap();
    assert_eq!(seen.len(), EVENTS);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    assert!(twice.is_empty(), "read_committed saw these twice: {twice:?}");
    let metrics = telemetry.render();
    let aborted = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"tollgate_transactions_total{result="aborted"} "#))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(aborted >= 1, "the injected failure aborted a transaction:\n{metrics}");
}

/// Every consumer starts from Tollgate's settings (no one-second fetch pause once its queue is
/// full), the user's `kafka.consumer` settings win over them, and a consumer's own
/// (`kafka.consumers.<member>`) win over both, for that consumer only.
#[test]
fn consumer_settings_are_tollgates_with_the_users_on_top() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments/router.toml");
    let mut config = RouterConfig::load(&example).unwrap();
    for member in Member::ALL {
        let settings = super::consumer_config(&config, member);
        assert_eq!(settings.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(settings.get("enable.partition.eof"), Some("false"));
        assert_eq!(settings.get("client.id"), Some(config.kafka.client_id.as_str()));
    }
    config.kafka.consumer.insert("fetch.queue.backoff.ms".into(), "1000".into());
    config.kafka.consumer.insert("fetch.wait.max.ms".into(), "5".into());
    config.kafka.consumers.audit_chain.insert("fetch.wait.max.ms".into(), "200".into());
    config.kafka.consumers.review_join.insert("fetch.min.bytes".into(), "1024".into());
    let get = |member, key| super::consumer_config(&config, member).get(key).map(str::to_owned);
    for member in Member::ALL {
        assert_eq!(get(member, "fetch.queue.backoff.ms").as_deref(), Some("1000"), "{member:?}");
    }
    assert_eq!(get(Member::Routing, "fetch.wait.max.ms").as_deref(), Some("5"));
    assert_eq!(get(Member::ReviewJoin, "fetch.wait.max.ms").as_deref(), Some("5"));
    assert_eq!(get(Member::AuditChain, "fetch.wait.max.ms").as_deref(), Some("200"));
    assert_eq!(get(Member::ReviewJoin, "fetch.min.bytes").as_deref(), Some("1024"));
    assert_eq!(get(Member::Routing, "fetch.min.bytes"), None);
}

/// A transactional producer on `cluster` (one broker) with a transaction begun and one record
/// of it acknowledged, and then every request of the broker's slowed by `round_trip`: the
/// transaction's commit can only complete after some of those round trips.
fn slowed_transaction(cluster: &MockCluster<'_, impl ClientContext>, id: &str, round_trip: Duration) -> BaseProducer {
    cluster.create_topic("resume", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("transactional.id", id)
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(10)).unwrap();
    producer.begin_transaction().unwrap();
    producer.send(BaseRecord::to("resume").key("k").payload("v")).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    cluster.broker_round_trip_time(1, round_trip).unwrap();
    producer
}

/// A commit that times out (the broker answers slower than the call waits) is made again until
/// it completes: librdkafka leaves it under way and resumes it on the next call.
#[test]
fn a_transaction_call_that_times_out_is_made_again_until_it_completes() {
    let cluster = MockCluster::new(1).unwrap();
    let producer = slowed_transaction(&cluster, "resume-completes", Duration::from_millis(800));
    let (telemetry, shutdown) = (Telemetry::new(), CancellationToken::new());
    let mut calls = 0;
    let committed = super::runner::resuming_for(Duration::from_secs(60), "committing", &telemetry, &shutdown, || {
        calls += 1;
        producer.commit_transaction(Duration::from_millis(100))
    });
    assert!(committed.is_ok(), "{committed:?}");
    assert!(calls > 1, "the first call should have timed out ({calls} call)");
    assert!(telemetry.render().contains(&format!("tollgate_kafka_errors_total {}", calls - 1)));
}

/// Resuming ends: at its limit, and at once on shutdown, the timeout is returned.
#[test]
fn a_transaction_call_still_timing_out_is_given_up() {
    let cluster = MockCluster::new(1).unwrap();
    let producer = slowed_transaction(&cluster, "resume-gives-up", Duration::from_secs(30));
    let (telemetry, shutdown) = (Telemetry::new(), CancellationToken::new());
    let commit = || producer.commit_transaction(Duration::from_millis(100));
    let started = Instant::now();
    let gave_up = super::runner::resuming_for(Duration::from_millis(700), "committing", &telemetry, &shutdown, commit);
    assert!(matches!(&gave_up, Err(rdkafka::error::KafkaError::Transaction(e)) if e.is_retriable()), "{gave_up:?}");
    assert!(started.elapsed() >= Duration::from_millis(700));
    shutdown.cancel();
    let mut calls = 0;
    let stopped = super::runner::resuming_for(Duration::from_secs(60), "committing", &telemetry, &shutdown, || {
        calls += 1;
        commit()
    });
    assert!(stopped.is_err(), "{stopped:?}");
    assert_eq!(calls, 1);
}
