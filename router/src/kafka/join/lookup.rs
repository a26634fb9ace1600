//! Fetches the changelog record that carries a review's original event, by its offset.

use super::super::consumer_config;
use super::LoopError;
use crate::config::RouterConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use tollgate_schemas::PendingChange;

/// Reads the changelog record that carries an event's original bytes.
pub(super) struct EventLookup {
    consumer: BaseConsumer,
    topic: String,
}

impl EventLookup {
    pub(super) fn new(config: &RouterConfig) -> Result<Self, LoopError> {
        let mut settings: ClientConfig = consumer_config(config);
        settings.set("group.id", format!("{}.lookup", config.kafka.group_id)).set("enable.auto.commit", "false");
        Ok(EventLookup { consumer: settings.create()?, topic: config.topics.pending_changelog.clone() })
    }

    pub(super) fn fetch(&self, partition: i32, offset: i64) -> Option<PendingChange<'static>> {
        if offset < 0 {
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset)).ok()?;
        self.consumer.assign(&tpl).ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.offset() == offset => return PendingChange::read(m.payload()?).ok(),
                // Compacted away (the review was forgotten meanwhile).
                Some(Ok(m)) if m.offset() > offset => return None,
                _ => {}
            }
        }
        None
    }
}
