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

mod head;

pub use head::Head;

use super::group::{Member, Membership};
use super::handoff::{HandOff, Handed, HandedRecords};
use super::intake::{announced_records, batch_headers};
use super::runner::{delivered_before_commit, rewind, TxnError, TXN_TIMEOUT};
use super::{consumer_config, poll_weighed, producer_config, LoopError, IDLE_POLL};
use crate::config::RouterConfig;
use crate::telemetry::Telemetry;
use fnv::{FnvHashMap, FnvHashSet};
use head::TailReader;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::log_to_tracing;
use tollgate_schemas::intake::AuditBatch;
use tollgate_schemas::unsealed::{read_unsealed, seal_unsealed, UnsealedBatch};
use tollgate_schemas::{headers, AuditRecord, RecordFormat};

/// The smallest batch (and transaction) of the chainer.
const CHAIN_BATCH: usize = 20_000;
/// How long a poll of the intake waits for a first record while no handed batch waits: short,
/// so that a batch handed meanwhile does not wait on an idle intake for [`IDLE_POLL`].
const HAND_OFF_WAIT: Duration = Duration::from_millis(5);

/// Counts rebalances, so a batch polled across one is abandoned; reports a group that does not
/// settle; tells the routing loops which intake partitions it holds.
struct ChainConsumerContext {
    generation: AtomicU64,
    telemetry: Telemetry,
    membership: Membership,
    hand_off: Option<Arc<HandOff>>,
}

impl ClientContext for ChainConsumerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.telemetry.kafka_error(&format_args!("audit chainer consumer: {error}: {reason}"));
    }

    fn stats(&self, statistics: Statistics) {
        self.membership.report(&statistics, &self.telemetry);
    }
}

impl ConsumerContext for ChainConsumerContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(h) = &self.hand_off {
            h.set_owned([]);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        let held: Vec<i32> = held_partitions(consumer);
        tracing::info!(partitions = ?held, "The audit chainer holds these intake partitions.");
        if let Some(h) = &self.hand_off {
            h.set_owned(held);
        }
    }
}

/// Counts failed deliveries of the open transaction.
struct ChainProducerContext {
    failures: AtomicUsize,
    telemetry: Telemetry,
}

impl ClientContext for ChainProducerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.telemetry.kafka_error(&format_args!("audit chainer producer: {error}: {reason}"));
    }
}

impl ProducerContext for ChainProducerContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            self.telemetry.delivery_failed(message.topic(), &error.to_string());
            self.failures.fetch_add(1, Ordering::AcqRel);
        }
    }
}

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

/// The intake partitions `consumer` holds now (none when the client cannot say).
fn held_partitions<C: ConsumerContext, B: FromIterator<i32> + Default>(consumer: &BaseConsumer<C>) -> B {
    consumer.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
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
    let producer: ThreadedProducer<ChainProducerContext> = producer_settings
        .create_with_context(ChainProducerContext { failures: AtomicUsize::new(0), telemetry: telemetry.clone() })?;
    producer.init_transactions(TXN_TIMEOUT)?;
    let mut consumer_settings = consumer_config(config);
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
    })?;
    consumer.subscribe(&[&topics.audit_intake])?;
    tracing::info!(intake = %topics.audit_intake, audit = %topics.audit, "Chaining audit records.");
    let mut chainer = Chainer {
        config,
        telemetry,
        heads: FnvHashMap::default(),
        resume: FnvHashMap::default(),
        buf: Vec::new(),
        tail: TailReader::default(),
    };
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
        if let Some(e) = partitions.map(|p| chainer.head(&consumer, p)).find_map(Result::err) {
            let why = match e {
                TxnError::Abort(why) => why,
                TxnError::Fatal(e) => e.to_string(),
            };
            telemetry.kafka_error(&format_args!("audit chainer: loading a chain head failed: {why}"));
            chainer.clear();
            rewind(&consumer, &messages);
            continue;
        }
        match chainer.chain_batch(&consumer, &producer, &messages, handed, &held) {
            Ok(chained) => {
                telemetry.audit_chained(chained.total);
                telemetry.audit_handed(chained.handed);
                for h in handed.drain(..) {
                    h.settle(telemetry, None);
                }
            }
            Err(TxnError::Abort(e)) => {
                telemetry.audit_transaction_aborted(&e);
                producer.abort_transaction(TXN_TIMEOUT)?;
                chainer.clear();
                rewind(&consumer, &messages);
            }
            Err(TxnError::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}

struct Chainer<'a> {
    config: &'a RouterConfig,
    telemetry: &'a Telemetry,
    /// Per intake partition (looked up for every record: a fast hash).
    heads: FnvHashMap<i32, Head>,
    /// Per intake partition whose head is loaded: the offset to commit with records handed in
    /// process while none was read from the intake (the committed one, else the first kept).
    resume: FnvHashMap<i32, i64>,
    buf: Vec<u8>,
    /// Reads an audit partition's last record when no head was committed with the offsets.
    tail: TailReader,
}

/// What a transaction chained: records in all, and of them records handed in process.
struct Chained {
    total: usize,
    handed: usize,
}

impl Chainer<'_> {
    /// Forgets the heads (and where to resume): after a rebalance or an abort they are loaded
    /// again from what was committed.
    fn clear(&mut self) {
        self.heads.clear();
        self.resume.clear();
    }

    /// The head of `partition`: in memory, else from the committed offset's metadata, else (for
    /// brokers that do not keep offset metadata) from the audit partition's last record.
    fn head(&mut self, consumer: &BaseConsumer<ChainConsumerContext>, partition: i32) -> Result<Head, TxnError> {
        if let Some(h) = self.heads.get(&partition) {
            return Ok(h.clone());
        }
        let intake = &self.config.topics.audit_intake;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(intake, partition);
        let committed =
            consumer.committed_offsets(tpl, Duration::from_secs(10)).map_err(|e| TxnError::Abort(e.to_string()))?;
        let elem = committed.find_partition(intake, partition);
        // Any commit means records were chained: offset 0 too, when only handed records were.
        let resume = elem.as_ref().and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        });
        let started = resume.is_some();
        let resume = match resume {
            Some(o) => o,
            None => {
                let (low, _) = consumer
                    .fetch_watermarks(intake, partition, Duration::from_secs(10))
                    .map_err(|e| TxnError::Abort(e.to_string()))?;
                low
            }
        };
        let from_metadata = elem.and_then(|e| Head::from_metadata(e.metadata()));
        let head = match from_metadata {
            Some(h) => h,
            // Nothing ever committed for this partition: a new chain.
            None if !started => Head::genesis(),
            None => self
                .tail
                .head(self.config, self.telemetry, partition)
                .map_err(|e| TxnError::Abort(e.to_string()))?
                .unwrap_or_else(|| {
                    tracing::warn!(
                    partition,
                    "Intake offsets are committed but the audit partition has no chained record; starting a new chain."
                );
                    Head::genesis()
                }),
        };
        tracing::debug!(partition, next_seq = head.next_seq, "Audit chain head loaded.");
        self.heads.insert(partition, head.clone());
        self.resume.insert(partition, resume);
        Ok(head)
    }

    /// Links `record` after `head` and encodes it into `buf`; returns its hash.
    fn seal(&mut self, record: &mut AuditRecord<'_>, head: &Head) -> Result<String, String> {
        self.buf.clear();
        record
            .seal_and_write(head.next_seq, &head.hash, self.config.output.format, &mut self.buf)
            .map_err(|e| format!("cannot encode it: {e}"))
    }

    /// Chains `record` on intake partition `partition` and enqueues it for the audit topic, keyed
    /// by `key` (the intake record's) or else its event id.
    fn chain_one(
        &mut self,
        consumer: &BaseConsumer<ChainConsumerContext>,
        producer: &ThreadedProducer<ChainProducerContext>,
        partition: i32,
        key: Option<&[u8]>,
        record: &mut AuditRecord<'_>,
    ) -> Result<Result<(), String>, TxnError> {
        let head = self.head(consumer, partition)?;
        let hash = match self.seal(record, &head) {
            Ok(hash) => hash,
            Err(why) => return Ok(Err(why)),
        };
        let out = BaseRecord::to(&self.config.topics.audit)
            .partition(partition)
            .key(key.unwrap_or(record.event_id.as_bytes()))
            .payload(self.buf.as_slice());
        send(producer, out)?;
        self.heads.insert(partition, Head { next_seq: head.next_seq + 1, hash });
        Ok(Ok(()))
    }

    /// Dead-letters `payload` (an intake record read at `source`, or one audit record of it):
    /// not an audit record the chain can take, kept with its cause.
    fn dead_letter(
        &self,
        producer: &ThreadedProducer<ChainProducerContext>,
        source: Source,
        payload: &[u8],
        key: Option<&[u8]>,
        why: &str,
    ) -> Result<(), TxnError> {
        self.telemetry.audit_intake_rejected();
        tracing::warn!(partition = source.partition, offset = ?source.offset, error = %why, "An audit intake record is not an audit record; dead-lettered.");
        let topics = &self.config.topics;
        let mut out = BaseRecord::to(&topics.dead_letter).payload(payload).headers(dead_letter_headers(
            &topics.audit_intake,
            source,
            why,
        ));
        if let Some(k) = key {
            out = out.key(k);
        }
        send(producer, out)
    }

    /// Chains the audit records of one intake record (`announced` of them in a batch, else
    /// one), or dead-letters what is not an audit record. Returns how many were chained.
    fn chain_intake(
        &mut self,
        consumer: &BaseConsumer<ChainConsumerContext>,
        producer: &ThreadedProducer<ChainProducerContext>,
        source: Source,
        (key, payload): (Option<&[u8]>, Option<&[u8]>),
        announced: Option<usize>,
    ) -> Result<usize, TxnError> {
        // A batch is decoded whole before any of its records is chained: one that is not what
        // it says is kept as it came, never chained in part.
        let records = match announced {
            None => parse(payload).map(|r| vec![r]),
            Some(n) => read_batch(payload, n),
        };
        let records = match records {
            Ok(records) => records,
            Err(why) => {
                self.dead_letter(producer, source, payload.unwrap_or_default(), key, &why)?;
                return Ok(0);
            }
        };
        let mut chained = 0;
        for mut record in records {
            let Err(why) = self.chain_one(consumer, producer, source.partition, key, &mut record)? else {
                chained += 1;
                continue;
            };
            if announced.is_some() {
                // Kept alone, as the intake record it would have been on its own.
                (record.chain_seq, record.chain_prev, record.chain_hash) = (None, None, None);
                let mut datum = Vec::new();
                record.write_intake(&mut datum);
                self.dead_letter(producer, source, &datum, Some(record.event_id.as_bytes()), &why)?;
            } else {
                self.dead_letter(producer, source, payload.unwrap_or_default(), key, &why)?;
            }
        }
        Ok(chained)
    }

    /// Chains unsealed records handed in process: with JSON output, each is completed with
    /// its chain fields and hashed, nothing decoded. Returns how many were chained.
    fn chain_unsealed(
        &mut self,
        consumer: &BaseConsumer<ChainConsumerContext>,
        producer: &ThreadedProducer<ChainProducerContext>,
        source: Source,
        batch: &UnsealedBatch,
    ) -> Result<usize, TxnError> {
        if self.config.output.format != RecordFormat::Json {
            // The loops gather unsealed records for JSON output only; any other takes the
            // long way, through the record.
            let mut chained = 0;
            for (key, unsealed) in batch.iter() {
                let chained_one = match read_unsealed(unsealed) {
                    Ok(mut record) => self.chain_one(consumer, producer, source.partition, Some(key), &mut record)?,
                    Err(e) => Err(format!("not an audit record: {e}")),
                };
                match chained_one {
                    Ok(()) => chained += 1,
                    Err(why) => self.dead_letter(producer, source, unsealed, Some(key), &why)?,
                }
            }
            return Ok(chained);
        }
        let partition = source.partition;
        let mut head = self.head(consumer, partition)?;
        for (key, unsealed) in batch.iter() {
            self.buf.clear();
            let hash = seal_unsealed(unsealed, head.next_seq, &head.hash, &mut self.buf);
            let out =
                BaseRecord::to(&self.config.topics.audit).partition(partition).key(key).payload(self.buf.as_slice());
            send(producer, out)?;
            head = Head { next_seq: head.next_seq + 1, hash };
        }
        // An abort forgets the heads: this one is only kept once every record is enqueued.
        self.heads.insert(partition, head);
        Ok(batch.records())
    }

    /// Writes a handed batch of a partition this chainer no longer holds to the intake, in
    /// the transaction, for the partition's new holder.
    fn pass_on(
        &self,
        producer: &ThreadedProducer<ChainProducerContext>,
        source: Source,
        handed: &Handed,
    ) -> Result<(), TxnError> {
        let mut converted = AuditBatch::default();
        let payload = match handed.payload.as_gathered().intake_value(&mut converted) {
            Ok(payload) => payload,
            // Laid out by this process's loops, so a defect: kept, record by record.
            Err(e) => {
                let why = format!("audit records handed unsealed do not read back: {e}");
                if let HandedRecords::Unsealed(batch) = &handed.payload {
                    for (key, unsealed) in batch.iter() {
                        self.dead_letter(producer, source, unsealed, Some(key), &why)?;
                    }
                }
                return Ok(());
            }
        };
        let out = BaseRecord::to(&self.config.topics.audit_intake)
            .partition(source.partition)
            .payload(payload)
            .headers(batch_headers(handed.records));
        send(producer, out)
    }

    /// One transaction: chains `messages` (read from the intake) and the `handed` batches of
    /// partitions in `held`, writes the other handed batches to the intake for their new owner,
    /// and commits the intake offsets with each partition's head.
    fn chain_batch(
        &mut self,
        consumer: &BaseConsumer<ChainConsumerContext>,
        producer: &ThreadedProducer<ChainProducerContext>,
        messages: &[BorrowedMessage<'_>],
        handed: &[Handed],
        held: &FnvHashSet<i32>,
    ) -> Result<Chained, TxnError> {
        producer.context().failures.store(0, Ordering::Release);
        producer.begin_transaction()?;
        let topics = &self.config.topics;
        // The offset to commit per intake partition chained.
        let mut next: FnvHashMap<i32, i64> = FnvHashMap::default();
        let mut chained = Chained { total: 0, handed: 0 };
        for m in messages {
            let source = Source { partition: m.partition(), offset: Some(m.offset()) };
            chained.total +=
                self.chain_intake(consumer, producer, source, (m.key(), m.payload()), announced_records(m))?;
            next.insert(m.partition(), m.offset() + 1);
        }
        if !handed.is_empty() {
            let position = consumer.position().unwrap_or_default();
            for h in handed {
                let partition = h.partition;
                let source = Source { partition, offset: None };
                if !held.contains(&partition) {
                    self.pass_on(producer, source, h)?;
                    continue;
                }
                let n = match &h.payload {
                    HandedRecords::Intake(bytes) => {
                        self.chain_intake(consumer, producer, source, (None, Some(bytes)), Some(h.records))?
                    }
                    HandedRecords::Unsealed(batch) => self.chain_unsealed(consumer, producer, source, batch)?,
                };
                chained.total += n;
                chained.handed += n;
                if let std::collections::hash_map::Entry::Vacant(slot) = next.entry(partition) {
                    // Nothing read from this partition in this transaction: its offset stays
                    // where it is, committed again with the head.
                    let at = match position.find_partition(&topics.audit_intake, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => self.resume.get(&partition).copied(),
                    };
                    slot.insert(at.ok_or_else(|| {
                        TxnError::Abort(format!("no offset to commit for intake partition {partition}"))
                    })?);
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in &next {
            offsets.add_partition_offset(&topics.audit_intake, *partition, Offset::Offset(*offset))?;
            if let (Some(mut elem), Some(head)) =
                (offsets.find_partition(&topics.audit_intake, *partition), self.heads.get(partition))
            {
                elem.set_metadata(head.to_metadata());
            }
        }
        let group = consumer.group_metadata().ok_or_else(|| TxnError::Abort("no consumer group metadata".into()))?;
        let failed = || producer.context().failures.load(Ordering::Acquire) > 0;
        delivered_before_commit(producer, failed, "an audit record")?;
        if offsets.count() > 0 {
            producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
        }
        producer.commit_transaction(TXN_TIMEOUT)?;
        Ok(chained)
    }
}

/// Where an intake record came from: its intake partition, and its offset when it was read
/// from the intake (records handed in process have none).
#[derive(Clone, Copy)]
struct Source {
    partition: i32,
    offset: Option<i64>,
}

/// Decodes an audit record, borrowing from `payload` where it can.
fn parse(payload: Option<&[u8]>) -> Result<AuditRecord<'_>, String> {
    let bytes = payload.filter(|p| !p.is_empty()).ok_or("the record has no value")?;
    AuditRecord::read_borrowed(RecordFormat::of(bytes), bytes).map_err(|e| format!("not an audit record: {e}"))
}

/// Decodes an intake batch of `announced` audit records.
fn read_batch(payload: Option<&[u8]>, announced: usize) -> Result<Vec<AuditRecord<'_>>, String> {
    let records =
        AuditRecord::read_batch(payload.unwrap_or_default()).map_err(|e| format!("not an audit record batch: {e}"))?;
    if records.len() != announced {
        return Err(format!("the batch holds {} audit records, its header says {announced}", records.len()));
    }
    Ok(records)
}

fn dead_letter_headers(topic: &str, source: Source, why: &str) -> OwnedHeaders {
    let headers = OwnedHeaders::new_with_capacity(5)
        .insert(Header { key: headers::ERROR_REASON, value: Some("malformed_audit") })
        .insert(Header { key: headers::ERROR_MESSAGE, value: Some(why) })
        .insert(Header { key: headers::SOURCE_TOPIC, value: Some(topic) })
        .insert(Header { key: headers::SOURCE_PARTITION, value: Some(&source.partition.to_string()) });
    match source.offset {
        Some(offset) => headers.insert(Header { key: headers::SOURCE_OFFSET, value: Some(&offset.to_string()) }),
        None => headers,
    }
}

/// Enqueues a record, waiting while the producer queue is full.
fn send(
    producer: &ThreadedProducer<ChainProducerContext>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), TxnError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(TxnError::Abort(e.to_string())),
        }
    }
}
