//! One chainer transaction: links intake records and handed batches into their partitions'
//! hash chains, writes them to the audit topic, dead-letters what is not an audit record, and
//! commits the intake offsets with each partition's head.

use super::context::{ChainConsumerContext, ChainProducerContext};
use super::head::{Head, TailReader};
use crate::config::RouterConfig;
use crate::kafka::handoff::{Handed, HandedRecords};
use crate::kafka::intake::{announced_records, batch_headers};
use crate::kafka::runner::{delivered_before_commit, resuming, TxnError, TXN_TIMEOUT};
use crate::telemetry::Telemetry;
use fnv::{FnvHashMap, FnvHashSet};
use rdkafka::client::Client;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tollgate_schemas::intake::AuditBatch;
use tollgate_schemas::unsealed::{read_unsealed, seal_unsealed, UnsealedBatch};
use tollgate_schemas::{headers, AuditRecord, RecordFormat};

/// The chainer's state across transactions: each partition's head, and where to resume it.
pub(super) struct Chainer<'a> {
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
pub(super) struct Chained {
    pub(super) total: usize,
    pub(super) handed: usize,
}

impl<'a> Chainer<'a> {
    pub(super) fn new(config: &'a RouterConfig, telemetry: &'a Telemetry) -> Self {
        Chainer {
            config,
            telemetry,
            heads: FnvHashMap::default(),
            resume: FnvHashMap::default(),
            buf: Vec::new(),
            tail: TailReader::default(),
        }
    }

    /// Forgets the heads (and where to resume): after a rebalance or an abort they are loaded
    /// again from what was committed.
    pub(super) fn clear(&mut self) {
        self.heads.clear();
        self.resume.clear();
    }

    /// The head of `partition`: in memory, else from the committed offset's metadata, else (for
    /// brokers that do not keep offset metadata) from the audit partition's last record.
    ///
    /// A partition never committed resumes at the intake's low watermark, asked through
    /// `watermarks` (the chainer's producer): not through `consumer`, whose connection to the
    /// partition's leader carries its fetch of the idle intake. A broker answers a connection's
    /// requests in order and holds an empty fetch for `fetch.wait.max.ms` (librdkafka's default
    /// 500 ms), so each such head would wait that long, one partition after the other, while
    /// the routing loops' handed batches wait for it.
    pub(super) fn head(
        &mut self,
        consumer: &BaseConsumer<ChainConsumerContext>,
        watermarks: &Client<impl ClientContext>,
        partition: i32,
    ) -> Result<Head, TxnError> {
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
                let (low, _) = watermarks
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
        let head = self.head(consumer, producer.client(), partition)?;
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
        let mut head = self.head(consumer, producer.client(), partition)?;
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
    pub(super) fn chain_batch(
        &mut self,
        consumer: &BaseConsumer<ChainConsumerContext>,
        producer: &ThreadedProducer<ChainProducerContext>,
        messages: &[BorrowedMessage<'_>],
        (handed, held): (&[Handed], &FnvHashSet<i32>),
        shutdown: &CancellationToken,
    ) -> Result<Chained, TxnError> {
        producer.context().failures.store(0, Ordering::Release);
        producer.context().aborting.end();
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
            resuming("sending an audit chain transaction's offsets", self.telemetry, shutdown, || {
                producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)
            })?;
        }
        resuming("committing an audit chain transaction", self.telemetry, shutdown, || {
            producer.commit_transaction(TXN_TIMEOUT)
        })?;
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
pub(super) fn parse(payload: Option<&[u8]>) -> Result<AuditRecord<'_>, String> {
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
