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
        let mut settings = tool_settings(config, &format!("{}.tools", config.kafka.group_id));
        settings.set("isolation.level", "read_committed");
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

/// The settings of a tools' consumer in group `group` (it joins no group: it is assigned, or
/// only asks for a group's offsets): the user's `kafka.consumer` settings apply, security and
/// fetch sizes among them, except those of group membership.
fn tool_settings(config: &RouterConfig, group: &str) -> ClientConfig {
    let mut settings = consumer_base(&config.kafka.brokers, &format!("{}.tools", config.kafka.client_id));
    settings.set("group.id", group).set("enable.auto.commit", "false");
    for (key, value) in &config.kafka.consumer {
        if !key.starts_with("group.") && key != "session.timeout.ms" {
            settings.set(key, value);
        }
    }
    settings
}

/// The committed offsets (with their metadata) of consumer group `group` on `topic`.
pub fn committed_offsets(
    config: &RouterConfig,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<TopicPartitionList, KafkaError> {
    // The user's settings apply here too: on a cluster that asks for credentials, a probe with
    // the broker list alone never gets an answer.
    let probe: BaseConsumer<LoggingContext> =
        tool_settings(config, group).create_with_context(LoggingContext::new("committed offsets probe"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    probe.committed_offsets(tpl, Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The tools' consumers (the topic reader and the committed-offsets probe) connect as the
    /// router's do: with its security settings, not its group membership.
    #[test]
    fn the_tools_consumers_take_the_users_settings_but_not_group_membership() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/payments/router.toml");
        let mut config = RouterConfig::load(Path::new(example)).unwrap();
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
            ("group.instance.id", "router-1"),
            ("session.timeout.ms", "6000"),
        ] {
            config.kafka.consumer.insert(k.to_owned(), v.to_owned());
        }
        let settings = tool_settings(&config, "payments.audit");
        assert_eq!(settings.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(settings.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(settings.get("group.id"), Some("payments.audit"));
        assert_eq!(settings.get("enable.auto.commit"), Some("false"));
        assert_eq!(settings.get("group.instance.id"), None);
        assert_eq!(settings.get("session.timeout.ms"), None);
    }
}
