//! The transactional sink's commits that are slow to be confirmed, on librdkafka's in-process
//! mock cluster: its coordinator can be made to put off a transaction's end at will (the test
//! broker, nisshi, cannot), without slowing the records before it.

use super::{KafkaSink, OutRecord, SinkError};
use crate::config::GatewayConfig;
use crate::telemetry::Telemetry;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use std::path::Path;
use std::time::{Duration, Instant};

const TOPIC: &str = "actions";

/// A sink on `cluster` whose transaction calls wait `timeout`, and whose commits are asked
/// again for up to `resume_for`.
fn sink(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    id: &str,
    timeout: Duration,
    resume_for: Duration,
) -> KafkaSink {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments/gateway.toml");
    let mut config = GatewayConfig::load(&example).unwrap();
    config.kafka.brokers = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    cluster.create_topic(&config.topics.audit_intake, 1, 1).unwrap();
    KafkaSink::with_timeouts(&config, id, &Telemetry::new(), timeout, resume_for).unwrap()
}

fn record(key: &str) -> OutRecord {
    OutRecord { topic: TOPIC.into(), key: key.into(), value: Some(b"{}".to_vec()) }
}

/// The coordinator answers a transaction's end `times` times with a retriable error before it
/// ends it: librdkafka retries each after a backoff, so the commit takes that long.
fn put_off_commits(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>, times: usize) {
    let error = RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
    cluster.request_errors(RDKafkaApiKey::EndTxn, &vec![error; times]);
}

/// A commit that outlasts its call's timeout is asked again, and its transaction ends committed.
#[test]
fn a_commit_not_confirmed_in_time_is_asked_again() {
    let cluster = MockCluster::new(1).unwrap();
    let timeout = Duration::from_millis(300);
    let sink = sink(&cluster, "gateway-resume", timeout, Duration::from_secs(30));
    put_off_commits(&cluster, 4);
    let asked = Instant::now();
    let written = sink.transaction(&[record("a")]);
    assert!(written.is_ok(), "{written:?}");
    assert!(asked.elapsed() > timeout, "the commit should have outlasted one call");
    // The same producer goes on.
    assert!(sink.transactional.lock().unwrap().is_some());
    assert!(sink.transaction(&[record("b")]).is_ok());
}

/// A commit never confirmed is reported as such (it may still be committed), not as an action
/// that was not recorded; the next action is written by a new producer.
#[test]
fn a_commit_never_confirmed_is_unconfirmed_and_the_next_action_is_written() {
    let cluster = MockCluster::new(1).unwrap();
    let sink = sink(&cluster, "gateway-unconfirmed", Duration::from_millis(200), Duration::from_millis(600));
    put_off_commits(&cluster, 1000);
    let written = sink.transaction(&[record("a")]);
    assert!(matches!(written, Err(SinkError::Unconfirmed(_))), "{written:?}");
    assert!(sink.transactional.lock().unwrap().is_none(), "the producer whose commit is under way is dropped");
    let counted = r#"tollgate_gateway_write_failures_total{kind="unconfirmed_transaction"} 1"#;
    assert!(sink.telemetry.render().contains(counted), "{}", sink.telemetry.render());
    cluster.clear_request_errors(RDKafkaApiKey::EndTxn);
    let next = sink.transaction(&[record("b")]);
    assert!(next.is_ok(), "{next:?}");
}
