//! The exactly-once abort path and resumed transaction calls, on librdkafka's in-process mock
//! cluster, whose requests can be made to fail or to be answered late at will (the test
//! broker, nisshi, cannot).

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

/// The exactly-once reference configuration on `cluster`, transactions of at most 50 events.
fn exactly_once_config(cluster: &MockCluster<'_, impl ClientContext>, group: &str) -> RouterConfig {
    let mut config = mock_config(cluster, group);
    config.processing.guarantee = Guarantee::ExactlyOnce;
    config.processing.batch_size = 50;
    config
}

/// The router's next produce requests fail for good: its transaction must abort. The mock
/// cluster fails every record of a failed request, so nothing of such a request reaches a
/// partition; records of the same transaction in other requests may.
fn fail_produce_requests(cluster: &MockCluster<'_, impl ClientContext>) {
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD; 3]);
}

/// Runs the router on `config` until a `read_committed` reader of its routes has seen
/// `expected` distinct events (then 2 s more, for duplicates), within `limit`; `meanwhile`
/// gets the router's metrics at each poll. Returns how often each event was seen, and the
/// metrics at the end.
///
/// librdkafka's mock cluster writes no transaction markers and shows read_committed readers
/// every record written (as nisshi does): records of an aborted transaction that reached a
/// partition are read as well, where a Kafka broker hides them.
fn route_and_read(
    config: &RouterConfig,
    expected: usize,
    limit: Duration,
    mut meanwhile: impl FnMut(&str),
) -> (HashMap<String, usize>, String) {
    let telemetry = Telemetry::new();
    let stop = CancellationToken::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pipeline = Pipeline::from_config(config).unwrap();
    let router = rt.spawn(crate::run_with(config.clone(), pipeline, telemetry.clone(), stop.clone()));

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", format!("{}-reader", config.kafka.group_id))
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
    let read = |seen: &mut HashMap<String, usize>| {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            *seen.entry(v["event_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    };
    let deadline = Instant::now() + limit;
    while seen.len() < expected {
        if router.is_finished() {
            let result = rt.block_on(router).unwrap();
            panic!("the router stopped: {result:?}");
        }
        let metrics = telemetry.render();
        if Instant::now() >= deadline {
            let metrics: Vec<_> =
                metrics.lines().filter(|l| l.starts_with("tollgate_") && !l.contains("_bucket")).collect();
            stop.cancel();
            let result = rt.block_on(async { tokio::time::timeout(Duration::from_secs(45), router).await });
            panic!("saw {} of {expected} events; router: {result:?}; metrics:\n{}", seen.len(), metrics.join("\n"));
        }
        meanwhile(&metrics);
        read(&mut seen);
    }
    // Anything duplicated would arrive shortly.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        read(&mut seen);
    }
    stop.cancel();
    rt.block_on(router).unwrap().unwrap();
    (seen, telemetry.render())
}

/// The value of routing transactions counted with `result` in `metrics`.
fn transactions(metrics: &str, result: &str) -> u64 {
    let line = format!(r#"tollgate_transactions_total{{result="{result}"}} "#);
    metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The events seen more than once, sorted.
fn repeated(seen: &HashMap<String, usize>) -> Vec<&str> {
    let mut twice: Vec<&str> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id.as_str()).collect();
    twice.sort_unstable();
    twice
}

/// Whether `id` is one of the first `n` events of `prefix` (`{prefix}-0` on).
fn among_first(id: &str, prefix: &str, n: usize) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| i < n)
}

/// Every event is routed, and the batch is retried. What the mock shows twice can only be
/// events of the aborted transaction (the first: at most one batch), whose records a Kafka
/// broker hides from read_committed readers.
#[test]
fn an_aborted_transaction_is_retried_and_every_event_routed() {
    let cluster = MockCluster::new(1).unwrap();
    let config = exactly_once_config(&cluster, "eos-test");
    produce_events(&config.kafka.brokers, "payments", "e", EVENTS);
    fail_produce_requests(&cluster);
    let (seen, metrics) = route_and_read(&config, EVENTS, Duration::from_secs(60), |_| {});
    assert_eq!(seen.len(), EVENTS);
    let twice = repeated(&seen);
    assert!(twice.iter().all(|id| among_first(id, "e", config.processing.batch_size)), "seen twice: {twice:?}");
    assert!(transactions(&metrics, "aborted") >= 1, "the injected failure aborted a transaction:\n{metrics}");
}

/// An abort that cannot complete (the coordinator never ends the transaction, so the call
/// times out) does not stop the router: the loop starts again with a new producer, which
/// fences the old one, and a new consumer, and routes every event. (Where the new consumer
/// starts is not shown here: the mock cluster keeps no offsets committed in a transaction, so
/// it starts from the beginning, as it would after the first transaction on any broker.)
#[test]
fn a_transaction_that_cannot_be_aborted_is_ended_by_a_new_producer() {
    let cluster = MockCluster::new(1).unwrap();
    let mut config = exactly_once_config(&cluster, "eos-unended");
    // The loop started again joins as a new member; the mock cluster rebalances only when the
    // old member's session has timed out.
    config.kafka.consumer.insert("session.timeout.ms".into(), "6000".into());
    produce_events(&config.kafka.brokers, "payments", "e", EVENTS);
    fail_produce_requests(&cluster);
    let put_off = RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
    cluster.request_errors(RDKafkaApiKey::EndTxn, &[put_off; 1000]);
    let mut cleared = false;
    let (seen, metrics) = route_and_read(&config, EVENTS, Duration::from_secs(120), |metrics| {
        // Once the loop has given up on the abort, the coordinator answers again.
        if !cleared && transactions(metrics, "unended") >= 1 {
            cluster.clear_request_errors(RDKafkaApiKey::EndTxn);
            cleared = true;
        }
    });
    assert_eq!(seen.len(), EVENTS);
    let twice = repeated(&seen);
    assert!(twice.iter().all(|id| among_first(id, "e", config.processing.batch_size)), "seen twice: {twice:?}");
    assert_eq!(transactions(&metrics, "unended"), 1, "{metrics}");
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
