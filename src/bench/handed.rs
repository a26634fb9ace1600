//! Stage 2 of the hand-off baselines ([`super::records::AuditPath::HandOff`] and the join's):
//! the Kafka work of the audit chainer of a router whose routing loops (or review join) hand it
//! their audit records in process.
//!
//! Like that chainer, the stage writes one chained record per handed event in transactions of
//! the chainer's size, and it holds a `read_committed` consumer of the (empty) audit intake in
//! a group of its own: its fetches go on while the records are handed, and each transaction
//! commits the intake offsets of the partitions it chained, with metadata the size of a chain
//! head's. Without that consumer the baseline left out requests the router makes (its fetches,
//! and the offsets' round trips in every transaction), and a setting of the chainer's consumer
//! (`kafka.consumers.audit_chain`) could not be compared against its records alone.

use super::machine::ThreadClock;
use super::records::{Teardown, Topics, CHAIN_BATCH};
use super::shape::Kept;
use crate::synth::send_waiting;
use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::{wait_delivered, LoggingContext};
use tollgate_router::config::RouterConfig;
use tollgate_router::kafka::group;

/// The channel of a hand-off's stage 2: each event's audit partition and number.
pub(super) type Handed = (std::sync::mpsc::SyncSender<(i32, u64)>, std::sync::mpsc::Receiver<(i32, u64)>);

/// A hand-off's channel, with room for a few poll batches of events waiting for stage 2.
pub(super) fn hand_off_channel() -> Handed {
    std::sync::mpsc::sync_channel(4 * CHAIN_BATCH)
}

/// What the hand-off's stage 2 works with.
pub(super) struct Stage2<'a> {
    pub config: &'a RouterConfig,
    pub topics: &'a Topics,
    pub events: u64,
    pub chained: &'a AtomicU64,
    pub deadline: Instant,
    pub done: &'a CancellationToken,
    /// Read again when the stage ends, if given.
    pub clock: Option<&'a ThreadClock>,
    /// Stages that have joined their groups: this one counts itself in once its intake
    /// consumer has an assignment.
    pub joined: &'a AtomicUsize,
    /// Set once its intake consumer has an assignment (as a routing loop waits for its
    /// chainer's, a stage 1 that hands events may wait for it).
    pub assigned: &'a AtomicBool,
    /// Takes its clients when it is done.
    pub teardown: &'a Teardown,
}

impl Stage2<'_> {
    /// Each event handed over becomes the next of `copies`, written in transactions of up to
    /// the chainer's size, as they come, until `events` are committed. Takes nothing before its
    /// intake consumer has joined its group.
    pub(super) fn chain_handed(
        &self,
        copies: &Kept,
        handed: &std::sync::mpsc::Receiver<(i32, u64)>,
    ) -> anyhow::Result<()> {
        let (config, topics, timeout) = (self.config, self.topics, Duration::from_secs(30));
        let id = format!("{}.{}-handed", config.kafka.group_id, topics.tag);
        let producer: ThreadedProducer<LoggingContext> = tollgate_router::kafka::chain_producer_config(config, &id)
            .create_with_context(LoggingContext::new("baseline hand-off producer"))?;
        producer.init_transactions(timeout)?;
        let consumer = self.join_intake(&id)?;
        // Records chained so far per partition (the sequence in each transaction's metadata),
        // and whether this transaction chained any in it.
        let mut heads: Vec<(u64, bool)> = Vec::new();
        let mut batch = Vec::with_capacity(CHAIN_BATCH);
        while self.chained.load(Ordering::Acquire) < self.events
            && Instant::now() < self.deadline
            && !self.done.is_cancelled()
        {
            batch.clear();
            let mut wait = Duration::from_millis(100);
            while batch.len() < CHAIN_BATCH {
                let Ok(event) = handed.recv_timeout(wait) else { break };
                batch.push(event);
                wait = Duration::ZERO;
            }
            // The chainer looks at its intake once per transaction.
            if let Some(m) = consumer.poll(Duration::ZERO) {
                anyhow::bail!("the hand-off baseline's audit intake is not empty: {:?}", m.map(|m| m.offset()));
            }
            if batch.is_empty() {
                continue;
            }
            producer.begin_transaction()?;
            for (partition, n) in &batch {
                let (key, value) = copies.nth(*n);
                let record = BaseRecord::to(&topics.audit).partition(*partition).key(key).payload(value);
                send_waiting(&producer, record, self.done)?;
                let at = usize::try_from(*partition)?;
                if heads.len() <= at {
                    heads.resize(at + 1, (0, false));
                }
                heads[at] = (heads[at].0 + 1, true);
            }
            let offsets = intake_offsets(&consumer, &topics.intake, &mut heads)?;
            let group = consumer.group_metadata().context("the hand-off baseline's consumer has no group metadata")?;
            wait_delivered(&producer, timeout, || producer.context().failed_deliveries() > 0)?;
            producer.send_offsets_to_transaction(&offsets, &group, timeout)?;
            producer.commit_transaction(timeout)?;
            self.chained.fetch_add(batch.len() as u64, Ordering::AcqRel);
        }
        if let Some(clock) = self.clock {
            clock.observe();
        }
        self.teardown.keep(consumer);
        self.teardown.keep(producer);
        Ok(())
    }

    /// The stage's `read_committed` consumer of the intake, in group `group_id`, once it has an
    /// assignment.
    fn join_intake(&self, group_id: &str) -> anyhow::Result<BaseConsumer> {
        let mut settings = tollgate_router::kafka::consumer_config(self.config, group::Member::AuditChain);
        // As the chainer sets them, after the user's settings.
        settings.set("group.id", group_id).set("enable.auto.commit", "false").set("isolation.level", "read_committed");
        let consumer: BaseConsumer = settings.create()?;
        consumer.subscribe(&[&self.topics.intake])?;
        while !consumer.assignment().is_ok_and(|a| a.count() > 0) {
            anyhow::ensure!(
                Instant::now() < self.deadline && !self.done.is_cancelled(),
                "the hand-off baseline's intake consumer got no assignment"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                anyhow::bail!("the hand-off baseline's audit intake is not empty: {:?}", m.map(|m| m.offset()));
            }
        }
        self.joined.fetch_add(1, Ordering::AcqRel);
        self.assigned.store(true, Ordering::Release);
        Ok(consumer)
    }
}

/// The intake offsets a transaction commits for the partitions it chained (those `heads` marks,
/// the marks cleared): where the consumer stands (the start of an empty partition before its
/// first fetch), each with metadata shaped like a chain head's (prefix, sequence, 64 hex
/// digits), the sequence the partition's count of records chained.
fn intake_offsets(
    consumer: &BaseConsumer,
    intake: &str,
    heads: &mut [(u64, bool)],
) -> anyhow::Result<TopicPartitionList> {
    let position = consumer.position()?;
    let mut offsets = TopicPartitionList::new();
    for (partition, (seq, touched)) in (0..).zip(heads.iter_mut()) {
        if !std::mem::take(touched) {
            continue;
        }
        let at = match position.find_partition(intake, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        };
        offsets.add_partition_offset(intake, partition, Offset::Offset(at))?;
        if let Some(mut elem) = offsets.find_partition(intake, partition) {
            elem.set_metadata(format!("baseline-chain-v1 {seq} {seq:064x}"));
        }
    }
    Ok(offsets)
}
