//! The routing loop's audit records, gathered per audit intake partition into batch records
//! ([`tollgate_schemas::intake`]): one intake record per partition and poll batch instead of one
//! per event.
//!
//! Each audit record goes to the intake partition its event id would get as a record key from
//! the producer's own partitioner, so an event's routing record and the records the gateway and
//! the review join write for it later (keyed by event id) share a partition, and so a chain.

use super::inflight::Gathered;
use crate::pipeline::AuditForm;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::time::Duration;
use tollgate_common::kafka::LoggingContext;
use tollgate_schemas::headers;
use tollgate_schemas::intake::AuditBatch;
use tollgate_schemas::unsealed::UnsealedBatch;

/// Bound on an intake batch record's size: under the broker's and the client's default
/// message size limit (1 MB), with room for the record's framing. A producer set to take less
/// (`message.max.bytes`) bounds the batches lower (see [`IntakeBatches::placed_like`]).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Room a record's key, headers and framing take beside its value, under the producer's
/// `message.max.bytes`.
pub const RECORD_HEADROOM: usize = 16 * 1024;

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The largest record value a producer of `settings` is given: its `message.max.bytes` less
/// [`RECORD_HEADROOM`].
pub fn max_record_bytes(settings: &ClientConfig) -> usize {
    let limit = settings.get("message.max.bytes").and_then(|v| v.trim().parse().ok());
    limit.unwrap_or(DEFAULT_MESSAGE_MAX_BYTES).saturating_sub(RECORD_HEADROOM)
}

/// The key hash of a librdkafka `partitioner` setting, for keyed records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHash {
    /// `consistent`, `consistent_random` (librdkafka's default): CRC-32.
    Crc32,
    /// `murmur2`, `murmur2_random` (the Java client's default; Tollgate's): murmur2 with Kafka's
    /// seed, made positive.
    Murmur2,
}

/// The seed of Kafka's murmur2 (`Utils.murmur2`, librdkafka's `rd_murmur2`).
const KAFKA_MURMUR2_SEED: u32 = 0x9747_b28c;

impl KeyHash {
    /// The hash a `partitioner` setting applies to keyed records. `random` ignores keys, so any
    /// partition is as right as another; murmur2 then spreads them. The `fnv1a` ones are not
    /// supported (refused when the configuration is validated).
    pub fn of_partitioner(name: &str) -> Option<KeyHash> {
        match name {
            "consistent" | "consistent_random" => Some(KeyHash::Crc32),
            "murmur2" | "murmur2_random" | "random" => Some(KeyHash::Murmur2),
            _ => None,
        }
    }

    /// The partition librdkafka gives a record keyed `key` among `count` partitions (`count` > 0).
    pub fn partition(self, key: &[u8], count: i32) -> i32 {
        let count = count.max(1) as u32;
        let hash = match self {
            KeyHash::Crc32 => crc32fast::hash(key),
            KeyHash::Murmur2 => murmur2::murmur2(key, KAFKA_MURMUR2_SEED) & 0x7fff_ffff,
        };
        (hash % count) as i32
    }
}

/// Where audit records go among the intake's partitions: by their event id's hash.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    hash: KeyHash,
    partitions: i32,
}

impl Placement {
    /// The intake partition of `event_id`.
    pub fn partition_of(&self, event_id: &[u8]) -> usize {
        self.hash.partition(event_id, self.partitions) as usize
    }

    /// The number of intake partitions.
    pub fn partitions(&self) -> usize {
        self.partitions as usize
    }
}

/// The intake batches of the open batch of input, per intake partition: one in the intake's
/// form, and one of records gathered unsealed for this process's chainer
/// ([`crate::pipeline::AuditForm`]).
#[derive(Debug)]
pub struct IntakeBatches {
    placement: Placement,
    batches: Vec<AuditBatch>,
    unsealed: Vec<UnsealedBatch>,
    /// A batch is sent before it would pass this many bytes.
    max_bytes: usize,
}

impl IntakeBatches {
    /// Batches for an intake topic of `partitions` partitions, placed by `hash`.
    pub fn new(hash: KeyHash, partitions: i32) -> IntakeBatches {
        let partitions = partitions.max(1);
        IntakeBatches {
            placement: Placement { hash, partitions },
            batches: vec![AuditBatch::default(); partitions as usize],
            unsealed: vec![UnsealedBatch::default(); partitions as usize],
            max_bytes: MAX_BATCH_BYTES,
        }
    }

    /// Batches bounded to `max_bytes` (at most [`MAX_BATCH_BYTES`]).
    pub fn bounded(mut self, max_bytes: usize) -> IntakeBatches {
        self.max_bytes = max_bytes.min(MAX_BATCH_BYTES);
        self
    }

    /// The bound a batch is sent before passing.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The intake partition of `event_id`.
    pub fn partition_of(&self, event_id: &[u8]) -> usize {
        self.placement.partition_of(event_id)
    }

    pub fn get(&self, partition: usize) -> &AuditBatch {
        &self.batches[partition]
    }

    pub fn get_mut(&mut self, partition: usize) -> &mut AuditBatch {
        &mut self.batches[partition]
    }

    pub fn unsealed(&self, partition: usize) -> &UnsealedBatch {
        &self.unsealed[partition]
    }

    pub fn unsealed_mut(&mut self, partition: usize) -> &mut UnsealedBatch {
        &mut self.unsealed[partition]
    }

    /// What is gathered for `partition` in `form`, and how many records.
    pub fn gathered(&self, partition: usize, form: AuditForm) -> (Gathered<'_>, usize) {
        match form {
            AuditForm::Intake => {
                (Gathered::Intake(self.batches[partition].as_bytes()), self.batches[partition].records())
            }
            AuditForm::Unsealed => (Gathered::Unsealed(&self.unsealed[partition]), self.unsealed[partition].records()),
        }
    }

    /// Empties what is gathered for `partition` in `form`.
    pub fn clear_gathered(&mut self, partition: usize, form: AuditForm) {
        match form {
            AuditForm::Intake => self.batches[partition].clear(),
            AuditForm::Unsealed => self.unsealed[partition].clear(),
        }
    }

    /// Empties every batch.
    pub fn clear(&mut self) {
        self.batches.iter_mut().for_each(AuditBatch::clear);
        self.unsealed.iter_mut().for_each(UnsealedBatch::clear);
    }

    /// The number of intake partitions.
    pub fn partitions(&self) -> usize {
        self.batches.len()
    }
}

/// The headers of an intake batch record of `records` audit records: its
/// [`headers::AUDIT_BATCH`] count, which [`announced_records`] reads.
pub fn batch_headers(records: usize) -> OwnedHeaders {
    let count = records.to_string();
    OwnedHeaders::new_with_capacity(1).insert(Header { key: headers::AUDIT_BATCH, value: Some(&count) })
}

/// For an intake batch record, the number of audit records its [`headers::AUDIT_BATCH`] header
/// announces; `None` for a single audit record. A header that is not a count still marks a
/// batch (`Some(0)`): reading the batch will say what is wrong.
pub fn announced_records<M: Message>(m: &M) -> Option<usize> {
    let value = super::header(m, headers::AUDIT_BATCH)?;
    Some(value.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0))
}

/// How long a loop waits at start-up for the audit intake topic to exist.
pub const TOPIC_WAIT: Duration = Duration::from_secs(30);

impl IntakeBatches {
    /// Intake batches for `topic`, placed as a producer of `producer` settings places keyed
    /// records (its partitioner, the topic's partition count read with `consumer` settings).
    pub fn placed_like(
        producer: &ClientConfig,
        consumer: &ClientConfig,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let partitions = partition_count(consumer, topic, timeout)?;
        // librdkafka's default partitioner is `consistent_random` (CRC-32).
        let hash = producer.get("partitioner").and_then(KeyHash::of_partitioner).unwrap_or(KeyHash::Crc32);
        Ok(IntakeBatches::new(hash, partitions).bounded(max_record_bytes(producer)))
    }
}

/// The partition count of `topic`, read with a short-lived client of `settings`, waiting up to
/// `timeout` for the topic to exist.
pub fn partition_count(settings: &ClientConfig, topic: &str, timeout: Duration) -> Result<i32, KafkaError> {
    let probe: BaseConsumer<LoggingContext> =
        settings.create_with_context(LoggingContext::new("partition count probe"))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let found = probe.fetch_metadata(Some(topic), Duration::from_secs(5)).map(|m| {
            m.topics().iter().find(|t| t.name() == topic && t.error().is_none()).map_or(0, |t| t.partitions().len())
        });
        match found {
            Ok(count) if count > 0 => return Ok(count as i32),
            Ok(_) if std::time::Instant::now() >= deadline => {
                tracing::error!(topic, "The topic does not exist.");
                return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
            }
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioner_names_map_to_their_key_hash() {
        assert_eq!(KeyHash::of_partitioner("murmur2_random"), Some(KeyHash::Murmur2));
        assert_eq!(KeyHash::of_partitioner("consistent_random"), Some(KeyHash::Crc32));
        assert_eq!(KeyHash::of_partitioner("random"), Some(KeyHash::Murmur2));
        assert_eq!(KeyHash::of_partitioner("fnv1a"), None);
    }

    /// Known values: murmur2 as the Java client hashes (Kafka's own test vectors), CRC-32's
    /// check value. A count of `i32::MAX` leaves the positive hash nearly whole.
    #[test]
    fn keys_hash_as_the_java_client_and_crc32_do() {
        let positive = |h: i32| (h & 0x7fff_ffff) % i32::MAX;
        for (key, java) in [("21", -973_932_308), ("foobar", -790_332_482), ("abc", 479_470_107)] {
            assert_eq!(KeyHash::Murmur2.partition(key.as_bytes(), i32::MAX), positive(java), "{key}");
        }
        assert_eq!(KeyHash::Crc32.partition(b"123456789", i32::MAX), (0xCBF4_3926u32 % 0x7fff_ffff) as i32);
        let keys: Vec<String> = (0..200).map(|i| format!("pay-{i:04}")).collect();
        for hash in [KeyHash::Crc32, KeyHash::Murmur2] {
            for count in [1, 3, 6] {
                assert!(keys.iter().all(|k| (0..count).contains(&hash.partition(k.as_bytes(), count))));
            }
        }
        let placed = |h: KeyHash| keys.iter().map(|k| h.partition(k.as_bytes(), 6)).collect::<Vec<_>>();
        assert_ne!(placed(KeyHash::Crc32), placed(KeyHash::Murmur2));
        assert_eq!(KeyHash::Murmur2.partition(b"", 6), KeyHash::Murmur2.partition(b"", 6));
    }
}
