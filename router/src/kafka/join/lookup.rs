//! Fetches the changelog records that carry reviews' original events, by their offsets: one
//! pass per batch of resolutions, reading on from where the previous one stopped.

use super::super::consumer_config;
use super::LoopError;
use crate::config::RouterConfig;
use crate::kafka::group::Member;
use crate::telemetry::Telemetry;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_common::kafka::LoggingContext;
use tollgate_schemas::PendingChange;

/// Past this many records to the next wanted one, the lookup seeks instead of reading on.
const SEEK_GAP: i64 = 10_000;
const SEEK_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads the changelog records that carry events' original bytes, for the resolutions whose
/// events the join did not keep in memory (see `cache`).
///
/// The reader keeps its partitions assigned between lookups and reads on from where it stopped,
/// seeking only backwards or past a long gap: when resolutions follow the changelog's order,
/// the next batch's records are just ahead or already fetched. (They often do not: a changelog
/// partition interleaves the batches of every input partition, which is why the join keeps
/// events in memory first.) Each partition has its own queue, so reading one partition never
/// consumes, and throws away, what was fetched for another.
pub(super) struct EventLookup {
    consumer: Arc<BaseConsumer<LoggingContext>>,
    topic: String,
    partitions: HashMap<i32, Cursor>,
}

/// One changelog partition of the reader.
struct Cursor {
    queue: PartitionQueue<LoggingContext>,
    /// The offset the queue delivers next.
    next: i64,
}

impl EventLookup {
    pub(super) fn new(config: &RouterConfig, telemetry: &Telemetry) -> Result<Self, LoopError> {
        let mut settings: ClientConfig = consumer_config(config, Member::ReviewJoin);
        // No statistics: its context does not read them (they only feed the lag gauge).
        settings
            .set("group.id", format!("{}.lookup", config.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("statistics.interval.ms", "0");
        Ok(EventLookup {
            consumer: Arc::new(settings.create_with_context(telemetry.client_context("review event lookup"))?),
            topic: config.topics.pending_changelog.clone(),
            partitions: HashMap::new(),
        })
    }

    /// Reads the changelog records at `wanted` (partition, offset) in one pass, so a batch of
    /// resolutions costs at most one fetch round trip rather than one each. Records compacted
    /// away (or not found within a few seconds) are absent from the answer.
    pub(super) fn fetch_many(&mut self, wanted: &[(i32, i64)]) -> HashMap<(i32, i64), PendingChange<'static>> {
        let mut found = HashMap::with_capacity(wanted.len());
        let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for &(partition, offset) in wanted.iter().filter(|(_, o)| *o >= 0) {
            by_partition.entry(partition).or_default().push(offset);
        }
        for offsets in by_partition.values_mut() {
            offsets.sort_unstable();
            offsets.dedup();
            offsets.reverse(); // popped from the end, smallest first
        }
        by_partition.retain(|&partition, offsets| {
            let first = offsets.last().copied().unwrap_or(0);
            match self.position(partition, first) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, partition, "Cannot position the changelog reader; those events are not looked up.");
                    false
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !by_partition.is_empty() && Instant::now() < deadline {
            let mut progressed = false;
            let mut done = Vec::new();
            for (&partition, offsets) in &mut by_partition {
                let Some(cursor) = self.partitions.get_mut(&partition) else { continue };
                // What this partition has fetched, without waiting.
                while let Some(Ok(m)) = cursor.queue.poll(Duration::ZERO) {
                    progressed = true;
                    cursor.next = m.offset() + 1;
                    // Wanted offsets below this one were compacted away.
                    while offsets.last().is_some_and(|&o| o < m.offset()) {
                        offsets.pop();
                    }
                    if offsets.last() == Some(&m.offset()) {
                        offsets.pop();
                        if let Some(change) = m.payload().and_then(|p| PendingChange::read(p).ok()) {
                            found.insert((partition, m.offset()), change);
                        }
                    }
                    if offsets.is_empty() {
                        break;
                    }
                }
                match offsets.last().copied() {
                    None => done.push(partition),
                    Some(next) if next - cursor.next > SEEK_GAP => done.push(partition),
                    Some(_) => {}
                }
            }
            for partition in done {
                // Either finished, or far behind the next wanted record: seek to it.
                let next = by_partition.get(&partition).and_then(|o| o.last().copied());
                match next {
                    Some(next) if self.position(partition, next).is_ok() => {}
                    _ => {
                        by_partition.remove(&partition);
                    }
                }
            }
            if !progressed {
                // Serves the reader's callbacks and waits a moment for the fetches.
                let _ = self.consumer.poll(Duration::from_millis(1));
            }
        }
        found
    }

    /// Makes `partition` deliver `offset` next: assigns it the first time, seeks when the
    /// reader is past `offset` or far before it, and otherwise reads on.
    fn position(&mut self, partition: i32, offset: i64) -> Result<(), KafkaError> {
        let next = match self.partitions.get(&partition) {
            Some(cursor) if cursor.next <= offset && offset - cursor.next <= SEEK_GAP => return Ok(()),
            Some(cursor) => Some(cursor.next),
            None => None,
        };
        if next.is_some() && self.consumer.seek(&self.topic, partition, Offset::Offset(offset), SEEK_TIMEOUT).is_ok() {
            if let Some(cursor) = self.partitions.get_mut(&partition) {
                cursor.next = offset;
            }
            return Ok(());
        }
        // First use, or a partition that cannot seek yet: (re)assign it at `offset`.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        if self.partitions.remove(&partition).is_some() {
            self.consumer.incremental_unassign(&tpl)?;
        }
        let queue = self
            .consumer
            .split_partition_queue(&self.topic, partition)
            .ok_or(KafkaError::Seek(format!("no queue for partition {partition}")))?;
        self.consumer.incremental_assign(&tpl)?;
        self.partitions.insert(partition, Cursor { queue, next: offset });
        Ok(())
    }
}
