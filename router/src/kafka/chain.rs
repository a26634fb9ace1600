//! The audit chainer: moves audit records from `tollgate.audit-intake` to `tollgate.audit`,
//! linking each into its partition's hash chain.
//!
//! Every Tollgate writer (the routing loop, the review join, the reviewer gateway) sends its
//! audit records to the intake topic, keyed by event id; the routing loop sends them in batches
//! ([`tollgate_schemas::intake`]), each in the partition its records' event ids get as keys. The
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

use super::group::{Member, Membership};
use super::intake::announced_records;
use super::runner::{delivered_before_commit, rewind, TxnError, TXN_TIMEOUT};
use super::{consumer_config, poll_weighed, producer_config, LoopError};
use crate::config::RouterConfig;
use crate::telemetry::Telemetry;
use fnv::FnvHashMap;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::{log_to_tracing, LoggingContext};
use tollgate_schemas::audit::GENESIS;
use tollgate_schemas::{headers, AuditRecord, RecordFormat};

/// The smallest batch (and transaction) of the chainer.
const CHAIN_BATCH: usize = 20_000;

/// How long an audit partition must be quiet before its last record read is taken as the head.
const TAIL_QUIET: Duration = Duration::from_millis(500);
/// How far before the high watermark the tail read starts.
const TAIL_WINDOW: i64 = 100;
/// How long to wait for the first record when reading an audit partition's tail.
const TAIL_FIRST_RECORD: Duration = Duration::from_secs(10);

/// Prefix of the chain head kept in the committed offset's metadata.
const HEAD_PREFIX: &str = "tollgate-chain-v1";

/// The last link of a partition's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The sequence number the next record gets.
    pub next_seq: i64,
    /// The hash the next record links to.
    pub hash: String,
}

impl Head {
    pub fn genesis() -> Head {
        Head { next_seq: 0, hash: GENESIS.to_owned() }
    }

    /// The offset metadata that carries this head.
    pub fn to_metadata(&self) -> String {
        format!("{HEAD_PREFIX} {} {}", self.next_seq, self.hash)
    }

    /// The head in committed offset metadata; `None` when there is none (a new chain).
    pub fn from_metadata(metadata: &str) -> Option<Head> {
        let mut parts = metadata.split(' ');
        if parts.next() != Some(HEAD_PREFIX) {
            return None;
        }
        let next_seq = parts.next()?.parse().ok()?;
        let hash = parts.next()?;
        (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && parts.next().is_none())
            .then(|| Head { next_seq, hash: hash.to_owned() })
    }
}

/// Counts rebalances, so a batch polled across one is abandoned; reports a group that does not
/// settle.
struct ChainConsumerContext {
    generation: AtomicU64,
    telemetry: Telemetry,
    membership: Membership,
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

/// Runs the chainer on the current thread until `shutdown` is cancelled.
pub fn run_chain(config: &RouterConfig, telemetry: &Telemetry, shutdown: &CancellationToken) -> Result<(), LoopError> {
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
    })?;
    consumer.subscribe(&[&topics.audit_intake])?;
    tracing::info!(intake = %topics.audit_intake, audit = %topics.audit, "Chaining audit records.");
    let mut chainer = Chainer { config, telemetry, heads: FnvHashMap::default(), buf: Vec::new(), tail: None };
    // Each batch is one transaction, whose commit is a round trip to the transaction coordinator:
    // larger batches than the routing loop's amortise it.
    let batch_size = config.processing.batch_size.max(CHAIN_BATCH);
    while !shutdown.is_cancelled() {
        let generation = consumer.context().generation.load(Ordering::Acquire);
        let mut messages = Vec::with_capacity(batch_size);
        // A transaction holds about `batch_size` audit records, however they are batched.
        poll_weighed(&consumer, batch_size, telemetry, |m| {
            let weight = announced_records(&m).unwrap_or(1);
            messages.push(m);
            Ok::<_, LoopError>(weight)
        })?;
        if consumer.context().generation.load(Ordering::Acquire) != generation {
            // Partitions moved: heads are re-read from what the new assignment committed.
            chainer.heads.clear();
            rewind(&consumer, &messages);
            continue;
        }
        if messages.is_empty() {
            continue;
        }
        // Heads first, outside any transaction: loading one may read an audit partition's tail,
        // which must not eat into the transaction's timeout.
        if let Some(e) = messages.iter().find_map(|m| chainer.head(&consumer, m.partition()).err()) {
            let why = match e {
                TxnError::Abort(why) => why,
                TxnError::Fatal(e) => e.to_string(),
            };
            telemetry.kafka_error(&format_args!("audit chainer: loading a chain head failed: {why}"));
            chainer.heads.clear();
            rewind(&consumer, &messages);
            continue;
        }
        match chainer.chain_batch(&consumer, &producer, &messages) {
            Ok(chained) => telemetry.audit_chained(chained),
            Err(TxnError::Abort(e)) => {
                telemetry.audit_transaction_aborted(&e);
                producer.abort_transaction(TXN_TIMEOUT)?;
                chainer.heads.clear();
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
    buf: Vec<u8>,
    /// Reads an audit partition's last record when no head was committed with the offsets.
    tail: Option<BaseConsumer<LoggingContext>>,
}

impl Chainer<'_> {
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
        let started = elem.as_ref().is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o > 0));
        let from_metadata = elem.and_then(|e| Head::from_metadata(e.metadata()));
        let head = match from_metadata {
            Some(h) => h,
            // Nothing ever committed for this partition: a new chain.
            None if !started => Head::genesis(),
            None => self.tail_head(partition).map_err(|e| TxnError::Abort(e.to_string()))?.unwrap_or_else(|| {
                tracing::warn!(
                    partition,
                    "Intake offsets are committed but the audit partition has no chained record; starting a new chain."
                );
                Head::genesis()
            }),
        };
        tracing::debug!(partition, next_seq = head.next_seq, "Audit chain head loaded.");
        self.heads.insert(partition, head.clone());
        Ok(head)
    }

    /// The head after the last committed record of audit partition `partition`, if it has one.
    /// Reads from a little before the high watermark, or from the start when the broker's
    /// watermark leads nowhere, until the partition is quiet.
    fn tail_head(&mut self, partition: i32) -> Result<Option<Head>, KafkaError> {
        let audit = &self.config.topics.audit;
        if self.tail.is_none() {
            let mut settings = consumer_config(self.config);
            settings
                .set("group.id", format!("{}.audit-tail", self.config.kafka.group_id))
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                // Its context does not read statistics.
                .set("statistics.interval.ms", "0");
            self.tail = Some(settings.create_with_context(self.telemetry.client_context("audit chain tail reader"))?);
        }
        let Some(reader) = self.tail.as_ref() else { return Ok(None) };
        let (low, high) = reader.fetch_watermarks(audit, partition, Duration::from_secs(10))?;
        let mut last = None;
        // The last offsets are transaction markers, not records: start a little before the end.
        for start in [Offset::Offset((high - TAIL_WINDOW).max(low)), Offset::Beginning] {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(audit, partition, start)?;
            reader.assign(&tpl)?;
            // The first fetch of a fresh assignment takes a while; after a record, a short
            // quiet spell means the end.
            let first_by = std::time::Instant::now() + TAIL_FIRST_RECORD;
            let mut quiet_since: Option<std::time::Instant> = None;
            loop {
                match reader.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        last = parse(m.payload()).ok().map(AuditRecord::into_owned);
                        quiet_since = Some(std::time::Instant::now());
                    }
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
                let done = match quiet_since {
                    Some(t) => t.elapsed() >= TAIL_QUIET,
                    None => std::time::Instant::now() >= first_by,
                };
                if done {
                    break;
                }
            }
            if last.is_some() {
                break;
            }
        }
        reader.unassign()?;
        Ok(last.and_then(|r| match (r.chain_seq, r.chain_hash) {
            (Some(seq), Some(hash)) => Some(Head { next_seq: seq + 1, hash: hash.into_owned() }),
            _ => None,
        }))
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

    /// Dead-letters `payload` (intake record `m`, or one audit record of it): not an audit
    /// record the chain can take, kept with its cause.
    fn dead_letter(
        &self,
        producer: &ThreadedProducer<ChainProducerContext>,
        m: &BorrowedMessage<'_>,
        payload: &[u8],
        key: Option<&[u8]>,
        why: &str,
    ) -> Result<(), TxnError> {
        self.telemetry.audit_intake_rejected();
        tracing::warn!(partition = m.partition(), offset = m.offset(), error = %why, "An audit intake record is not an audit record; dead-lettered.");
        let topics = &self.config.topics;
        let mut out = BaseRecord::to(&topics.dead_letter).payload(payload).headers(dead_letter_headers(
            &topics.audit_intake,
            m,
            why,
        ));
        if let Some(k) = key {
            out = out.key(k);
        }
        send(producer, out)
    }

    fn chain_batch(
        &mut self,
        consumer: &BaseConsumer<ChainConsumerContext>,
        producer: &ThreadedProducer<ChainProducerContext>,
        messages: &[BorrowedMessage<'_>],
    ) -> Result<usize, TxnError> {
        producer.context().failures.store(0, Ordering::Release);
        producer.begin_transaction()?;
        let topics = &self.config.topics;
        let mut last: FnvHashMap<i32, i64> = FnvHashMap::default();
        let mut chained = 0;
        for m in messages {
            let partition = m.partition();
            // A batch is decoded whole before any of its records is chained: one that is not
            // what it says is kept as it came, never chained in part.
            let announced = announced_records(m);
            let records = match announced {
                None => parse(m.payload()).map(|r| vec![r]),
                Some(n) => read_batch(m.payload(), n),
            };
            match records {
                Ok(records) => {
                    for mut record in records {
                        let Err(why) = self.chain_one(consumer, producer, partition, m.key(), &mut record)? else {
                            chained += 1;
                            continue;
                        };
                        if announced.is_some() {
                            // Kept alone, as the intake record it would have been on its own.
                            (record.chain_seq, record.chain_prev, record.chain_hash) = (None, None, None);
                            let mut datum = Vec::new();
                            record.write_intake(&mut datum);
                            self.dead_letter(producer, m, &datum, Some(record.event_id.as_bytes()), &why)?;
                        } else {
                            self.dead_letter(producer, m, m.payload().unwrap_or_default(), m.key(), &why)?;
                        }
                    }
                }
                Err(why) => self.dead_letter(producer, m, m.payload().unwrap_or_default(), m.key(), &why)?,
            }
            last.insert(partition, m.offset());
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in &last {
            offsets.add_partition_offset(&topics.audit_intake, *partition, Offset::Offset(offset + 1))?;
            if let (Some(mut elem), Some(head)) =
                (offsets.find_partition(&topics.audit_intake, *partition), self.heads.get(partition))
            {
                elem.set_metadata(head.to_metadata());
            }
        }
        let group = consumer.group_metadata().ok_or_else(|| TxnError::Abort("no consumer group metadata".into()))?;
        let failed = || producer.context().failures.load(Ordering::Acquire) > 0;
        delivered_before_commit(producer, failed, "an audit record")?;
        producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
        producer.commit_transaction(TXN_TIMEOUT)?;
        Ok(chained)
    }
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

fn dead_letter_headers(topic: &str, m: &BorrowedMessage<'_>, why: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header { key: headers::ERROR_REASON, value: Some("malformed_audit") })
        .insert(Header { key: headers::ERROR_MESSAGE, value: Some(why) })
        .insert(Header { key: headers::SOURCE_TOPIC, value: Some(topic) })
        .insert(Header { key: headers::SOURCE_PARTITION, value: Some(&m.partition().to_string()) })
        .insert(Header { key: headers::SOURCE_OFFSET, value: Some(&m.offset().to_string()) })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_through_offset_metadata_and_junk_starts_a_new_chain() {
        let head = Head { next_seq: 42, hash: "ab".repeat(32) };
        assert_eq!(Head::from_metadata(&head.to_metadata()), Some(head));
        for junk in [
            "",
            "x",
            "tollgate-chain-v1 1",
            "tollgate-chain-v1 x abc",
            &format!("tollgate-chain-v1 1 {}", "g".repeat(64)),
        ] {
            assert_eq!(Head::from_metadata(junk), None, "{junk}");
        }
        assert_eq!(Head::genesis().hash, GENESIS);
    }
}
