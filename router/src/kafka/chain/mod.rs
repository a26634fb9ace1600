//! The audit chainer: moves audit records from `tollgate.audit-intake` to `tollgate.audit`,
//! linking each into its partition's hash chain.
//!
//! Every Tollgate writer (the routing loop, the review join, the reviewer gateway) sends its
//! audit records to the intake topic, keyed by event id; the routing loop sends them in batches
//! ([`tollgate_schemas::intake`]), each in the partition its records' event ids get as keys, or
//! hands a batch to this chainer when it holds that partition ([`super::handoff`]). The
//! chainer writes every record of a batch on its own, keyed by its event id, and bounds a
//! transaction by records, not intake records. The chainer consumes the intake in its
//! own consumer group (`<group>.audit`) and writes each record to the same partition number of
//! the audit topic with `chain_seq`, `chain_prev` (the hash of the partition's previous record)
//! and `chain_hash` set. So each audit partition has exactly one writer at a time (the owner of
//! the intake partition), which is what makes "the previous record of its partition" well
//! defined however many routers and gateways write audit records.
//!
//! Exactly once: a batch's chained records and its intake offsets are one Kafka transaction. The
//! chain head (sequence and hash of the last record) travels in the committed offset's metadata,
//! so a new owner of a partition continues the chain from what was committed, never from a record
//! of an aborted batch. Heads are kept in memory and dropped on every rebalance or abort, then
//! re-read from the committed offsets. A broker that does not keep offset metadata (nisshi
//! 0.6) gets the head from the audit partition's last committed record instead.

mod chainer;
mod context;
mod head;
#[cfg(test)]
mod tests;

pub use head::Head;

use super::context::Aborting;
use super::group::{Member, Membership};
use super::handoff::{HandOff, Handed};
use super::intake::announced_records;
use super::runner::{resuming, rewind, TxnError, TXN_TIMEOUT};
use super::{consumer_config, poll_weighed, producer_config, LoopError, IDLE_POLL};
use crate::config::RouterConfig;
use crate::telemetry::Telemetry;
use chainer::Chainer;
use context::{held_partitions, ChainConsumerContext, ChainProducerContext};
use fnv::FnvHashSet;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{Producer, ThreadedProducer};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::txn_fatal;

/// The smallest batch (and transaction) of the chainer.
const CHAIN_BATCH: usize = 20_000;
/// How long a poll of the intake waits for a first record while no handed batch waits: short,
/// so that a batch handed meanwhile does not wait on an idle intake for [`IDLE_POLL`].
const HAND_OFF_WAIT: Duration = Duration::from_millis(5);

/// The chainer's producer settings: [`producer_config`], transactional as `transactional_id`.
/// It reports failed deliveries only: a transaction fails as a whole when one of its records
/// does, so a report per chained record would only cost the producer's polling thread its
/// work. Failures are still counted, and abort the batch before its commit.
pub fn chain_producer_config(config: &RouterConfig, transactional_id: &str) -> rdkafka::ClientConfig {
    let mut settings = producer_config(config);
    settings.set("transactional.id", transactional_id).set("delivery.report.only.error", "true");
    settings
}

/// Runs the chainer on the current thread until `shutdown` is cancelled, chaining the intake
/// and what this process's routing loops hand it (`hand_off`). On the way out it fails the
/// handed batches it did not commit, and takes no more.
pub fn run_chain(
    config: &RouterConfig,
    telemetry: &Telemetry,
    hand_off: Option<Arc<HandOff>>,
    shutdown: &CancellationToken,
) -> Result<(), LoopError> {
    let mut closing = Closing { hand_off: hand_off.clone(), telemetry, handed: Vec::new() };
    chain_until(config, telemetry, hand_off, &mut closing.handed, shutdown)
}

/// Closes the hand-off however the chainer ends, a panic included: the loops go back to the
/// intake, and the batches it holds fail (their input is never committed).
struct Closing<'a> {
    hand_off: Option<Arc<HandOff>>,
    telemetry: &'a Telemetry,
    /// Batches taken and not committed yet.
    handed: Vec<Handed>,
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.hand_off.take() {
            h.close(self.telemetry, std::mem::take(&mut self.handed));
        }
    }
}

fn chain_until(
    config: &RouterConfig,
    telemetry: &Telemetry,
    hand_off: Option<Arc<HandOff>>,
    handed: &mut Vec<Handed>,
    shutdown: &CancellationToken,
) -> Result<(), LoopError> {
    let topics = &config.topics;
    // Stable across restarts of this instance, so a restarted chainer aborts what a crashed one
    // left open (else the group's offsets stay unstable until the broker times it out, which
    // some brokers never do). Distinct per instance (see `processing.transactional_id`).
    let producer_settings = chain_producer_config(config, &format!("{}.audit", config.transactional_id()));
    // Made again when an aborted transaction cannot be ended (see below).
    let transactional = || -> Result<ThreadedProducer<ChainProducerContext>, LoopError> {
        let producer: ThreadedProducer<ChainProducerContext> =
            producer_settings.create_with_context(ChainProducerContext {
                failures: AtomicUsize::new(0),
                telemetry: telemetry.clone(),
                aborting: Aborting::default(),
            })?;
        resuming("initialising the audit chainer's transactions", telemetry, shutdown, || {
            producer.init_transactions(TXN_TIMEOUT)
        })?;
        Ok(producer)
    };
    let mut producer = transactional()?;
    let mut consumer_settings = consumer_config(config, Member::AuditChain);
    // Set after the user's overrides: offsets are committed only by the transactions.
    consumer_settings
        .set("group.id", format!("{}.audit", config.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer<ChainConsumerContext> = consumer_settings.create_with_context(ChainConsumerContext {
        generation: AtomicU64::new(0),
        telemetry: telemetry.clone(),
        membership: Membership::new(Member::AuditChain),
        hand_off: hand_off.clone(),
        intake: topics.audit_intake.clone(),
    })?;
    consumer.subscribe(&[&topics.audit_intake])?;
    tracing::info!(intake = %topics.audit_intake, audit = %topics.audit, "Chaining audit records.");
    let mut chainer = Chainer::new(config, telemetry);
    // Each batch is one transaction, whose commit is a round trip to the transaction coordinator:
    // larger batches than the routing loop's amortise it.
    let batch_size = config.processing.batch_size.max(CHAIN_BATCH);
    while !shutdown.is_cancelled() {
        let generation = consumer.context().generation.load(Ordering::Acquire);
        let mut messages = Vec::with_capacity(batch_size);
        // Handed batches wait for the next transaction: the intake is only looked at then.
        let first_wait = match &hand_off {
            None => IDLE_POLL,
            Some(h) if handed.is_empty() && !h.is_pending() => HAND_OFF_WAIT,
            Some(_) => Duration::ZERO,
        };
        // A transaction holds about `batch_size` audit records, however they are batched.
        poll_weighed(&consumer, batch_size, first_wait, telemetry, |m| {
            let weight = announced_records(&m).unwrap_or(1);
            messages.push(m);
            Ok::<_, LoopError>(weight)
        })?;
        if consumer.context().generation.load(Ordering::Acquire) != generation {
            // Partitions moved: heads are re-read from what the new assignment committed.
            // Handed batches stay, to be chained or passed on once it has settled.
            chainer.clear();
            rewind(&consumer, &messages);
            continue;
        }
        if let Some(h) = &hand_off {
            h.take_into(handed);
        }
        if messages.is_empty() && handed.is_empty() {
            continue;
        }
        // Handed batches are chained here only for partitions held now; the transaction's
        // offsets for them fence an owner that a rebalance has replaced since.
        let held: FnvHashSet<i32> = if handed.is_empty() { FnvHashSet::default() } else { held_partitions(&consumer) };
        // Heads first, outside any transaction: loading one may read an audit partition's tail,
        // which must not eat into the transaction's timeout.
        let partitions = messages
            .iter()
            .map(|m| m.partition())
            .chain(handed.iter().map(|h| h.partition).filter(|p| held.contains(p)));
        if let Some(e) = partitions.map(|p| chainer.head(&consumer, producer.client(), p)).find_map(Result::err) {
            let why = match e {
                TxnError::Abort(why) => why,
                TxnError::Fatal(e) => e.to_string(),
            };
            telemetry.kafka_error(&format_args!("audit chainer: loading a chain head failed: {why}"));
            chainer.clear();
            rewind(&consumer, &messages);
            continue;
        }
        match chainer.chain_batch(&consumer, &producer, &messages, (handed, &held), shutdown) {
            Ok(chained) => {
                telemetry.audit_chained(chained.total);
                telemetry.audit_handed(chained.handed);
                for h in handed.drain(..) {
                    h.settle(telemetry, None);
                }
            }
            Err(TxnError::Abort(e)) => {
                telemetry.audit_transaction_aborted(&e);
                producer.context().aborting.start();
                match producer.abort_transaction(TXN_TIMEOUT) {
                    Ok(()) => {}
                    Err(e) if shutdown.is_cancelled() || txn_fatal(&e) => return Err(e.into()),
                    // An abort that timed out: the broker does not answer, or the transaction's
                    // records timed out and it waits for a producer epoch bump, which some
                    // brokers never give. A new producer of the same transactional id fences
                    // this one and ends its transaction (its initialisation waits for the
                    // broker, see `resuming`).
                    Err(e) => {
                        telemetry.kafka_error(&format_args!(
                            "audit chainer: an aborted transaction could not be ended ({e}); making a new transactional producer"
                        ));
                        drop(std::mem::replace(&mut producer, transactional()?));
                    }
                }
                chainer.clear();
                rewind(&consumer, &messages);
            }
            Err(TxnError::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}
