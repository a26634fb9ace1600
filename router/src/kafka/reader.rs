//! Reading a whole topic (or its records since a time) outside any consumer group, for the
//! offline tools: audit verification, audit export and policy replay.
//!
//! The end of a topic is where no record arrived for `idle`: some brokers report high
//! watermarks that are never reached (or are reached early), and waiting for a quiet spell
//! works on every broker. Records come partition by partition interleaved; each partition's in
//! order.

use crate::config::RouterConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use tollgate_common::kafka::{consumer_base, LoggingContext};

/// Where reading starts in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
}

/// A consumer assigned to every partition of one topic.
pub struct TopicReader {
    consumer: BaseConsumer<LoggingContext>,
    idle: Duration,
    pub partitions: i32,
}

impl TopicReader {
    /// Opens `topic` (which must exist) on the configured brokers, reading committed records only.
    pub fn open(config: &RouterConfig, topic: &str, start: Start, idle: Duration) -> Result<TopicReader, KafkaError> {
        let mut settings = consumer_base(&config.kafka.brokers, &format!("{}.tools", config.kafka.client_id));
        settings
            .set("group.id", format!("{}.tools", config.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        for (key, value) in &config.kafka.consumer {
            // Group membership settings do not apply to an assigned reader; the rest (security,
            // fetch sizes) do.
            if !key.starts_with("group.") && key != "session.timeout.ms" {
                settings.set(key, value);
            }
        }
        let consumer: BaseConsumer<LoggingContext> =
            settings.create_with_context(LoggingContext::new("topic reader"))?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
        if partitions == 0 {
            return Err(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition));
        }
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            let offset = match start {
                Start::Beginning => Offset::Beginning,
                Start::Time(ms) => Offset::Offset(ms),
            };
            tpl.add_partition_offset(topic, p, offset)?;
        }
        if let Start::Time(_) = start {
            // Timestamps → offsets; a broker that cannot answer means reading from the start
            // (the caller filters by time anyway).
            tpl = match consumer.offsets_for_times(tpl.clone(), Duration::from_secs(10)) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "The broker cannot look offsets up by time; reading from the start.");
                    let mut all = TopicPartitionList::new();
                    for p in 0..partitions {
                        all.add_partition_offset(topic, p, Offset::Beginning)?;
                    }
                    all
                }
            };
        }
        consumer.assign(&tpl)?;
        Ok(TopicReader { consumer, idle, partitions })
    }

    /// Hands every record to `each` until the topic has been quiet for the idle time, or `each`
    /// returns false. Returns the number of records read.
    pub fn read(&self, mut each: impl FnMut(&BorrowedMessage<'_>) -> bool) -> Result<u64, KafkaError> {
        let mut last = Instant::now();
        let mut n = 0;
        while last.elapsed() < self.idle {
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => return Err(e),
                Some(Ok(m)) => {
                    n += 1;
                    last = Instant::now();
                    if !each(&m) {
                        break;
                    }
                }
            }
        }
        Ok(n)
    }
}

/// The committed offsets (with their metadata) of consumer group `group` on `topic`.
pub fn committed_offsets(
    config: &RouterConfig,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<TopicPartitionList, KafkaError> {
    let probe: BaseConsumer<LoggingContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create_with_context(LoggingContext::new("committed offsets probe"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    probe.committed_offsets(tpl, Duration::from_secs(10))
}
