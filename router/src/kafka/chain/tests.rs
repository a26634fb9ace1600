//! The chain head kept in the committed intake offset's metadata, on librdkafka's mock cluster.
//! nisshi, the test broker, keeps no offset metadata, so there a restarted chainer always takes
//! its heads from the audit partitions' last records (`tests/audit.rs`); a Kafka broker keeps
//! the metadata, and this is the path a restart takes on it. Reading the head is tested here;
//! that a broker stores the head the chainer's transaction commits is not, on any broker this
//! project tests against.

use super::Head;
use crate::config::RouterConfig;
use crate::kafka::tests::produce_events;
use crate::pipeline::Pipeline;
use crate::telemetry::Telemetry;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_schemas::{AuditRecord, RecordFormat};

const EVENTS: usize = 60;

/// Runs a router until the audit topic holds `records` chained records, then stops it; returns
/// the audit topic's records, chained or not, in order.
fn route_until_chained(config: &RouterConfig, records: usize) -> Vec<Vec<u8>> {
    let stop = CancellationToken::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pipeline = Pipeline::from_config(config).unwrap();
    let router = rt.spawn(crate::run_with(config.clone(), pipeline, Telemetry::new(), stop.clone()));
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", "audit-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&config.topics.audit, 0, Offset::Beginning).unwrap();
    reader.assign(&tpl).unwrap();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.iter().filter(|v| chained(v).is_some()).count() < records {
        assert!(!router.is_finished(), "the router stopped: {:?}", rt.block_on(router));
        assert!(Instant::now() < deadline, "{} audit records of {records}", seen.len());
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            seen.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    stop.cancel();
    rt.block_on(router).unwrap().unwrap();
    seen
}

fn chained(value: &[u8]) -> Option<AuditRecord<'static>> {
    AuditRecord::read(RecordFormat::Json, value).ok().map(AuditRecord::into_owned)
}

/// A restarted chainer continues each chain from the head committed with the intake offsets,
/// not from the audit partition's last record: here that record is not an audit record at all,
/// and a head read from it would start the chain again from the genesis hash.
#[test]
fn a_restarted_chainer_continues_each_chain_from_the_head_committed_with_its_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let config = crate::kafka::tests::mock_config(&cluster, "chain-head-test");
    produce_events(&brokers, &config.kafka.input_topic, "first", EVENTS);
    let first = route_until_chained(&config, EVENTS);
    let last = first.iter().rev().find_map(|v| chained(v)).unwrap();

    // The restarted router: the same audit topics, its own groups, its own input. The mock
    // cluster refuses offsets committed from outside a group that has had members, and it does
    // not store offsets committed in a transaction (nisshi keeps no metadata at all), so the
    // test commits for the new chainer's group what the last transaction commits on a Kafka
    // broker: the intake's end, with the head as metadata.
    let mut restarted = config.clone();
    restarted.kafka.group_id = "chain-head-test-restarted".into();
    restarted.kafka.input_topic = "payments-restarted".into();
    cluster.create_topic(&restarted.kafka.input_topic, 1, 1).unwrap();
    let offsets: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{}.audit", restarted.kafka.group_id))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let intake = &config.topics.audit_intake;
    let (_, end) = offsets.fetch_watermarks(intake, 0, Duration::from_secs(10)).unwrap();
    let head = Head { next_seq: last.chain_seq.unwrap() + 1, hash: last.chain_hash.as_deref().unwrap().to_owned() };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(intake, 0, Offset::Offset(end)).unwrap();
    tpl.find_partition(intake, 0).unwrap().set_metadata(head.to_metadata());
    offsets.commit(&tpl, CommitMode::Sync).unwrap();

    let junk: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    junk.send(BaseRecord::to(&config.topics.audit).partition(0).key("x").payload("not an audit record")).unwrap();
    junk.flush(Duration::from_secs(10)).unwrap();
    produce_events(&brokers, &restarted.kafka.input_topic, "second", EVENTS);
    let all = route_until_chained(&restarted, 2 * EVENTS);

    let mut prev = tollgate_schemas::audit::GENESIS.to_owned();
    for (seq, record) in all.iter().filter_map(|v| chained(v)).enumerate() {
        assert_eq!(record.chain_seq, Some(seq as i64), "{record:?}");
        assert_eq!(record.chain_prev.as_deref(), Some(prev.as_str()), "{record:?}");
        assert_eq!(record.chain_hash.as_deref(), Some(record.digest().as_str()));
        prev = record.chain_hash.as_deref().unwrap().to_owned();
    }
}
