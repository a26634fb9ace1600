//! A partition's chain head: kept in the committed intake offset's metadata, or read from the
//! audit partition's last record when the broker keeps no offset metadata.

use crate::config::RouterConfig;
use crate::kafka::consumer_config;
use crate::kafka::group::Member;
use crate::telemetry::Telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;
use tollgate_common::kafka::LoggingContext;
use tollgate_schemas::audit::GENESIS;
use tollgate_schemas::AuditRecord;

/// How long an audit partition must be quiet before its last record read is taken as the head.
const TAIL_QUIET: Duration = Duration::from_millis(500);
/// How far before the high watermark the tail read starts.
const TAIL_WINDOW: i64 = 100;
/// How long to wait for the first record when reading an audit partition's tail.
const TAIL_FIRST_RECORD: Duration = Duration::from_secs(10);
/// The tail reader's `fetch.wait.max.ms`, whatever the chainer's: well under [`TAIL_QUIET`].
/// Its fetch at a partition's end is held that long, and the next partition's watermarks,
/// asked on the same connection, are answered after it.
const TAIL_FETCH_WAIT_MS: &str = "50";

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

/// Reads audit partitions' last records (a consumer made on first use).
#[derive(Default)]
pub(super) struct TailReader {
    reader: Option<BaseConsumer<LoggingContext>>,
}

impl TailReader {
    /// The head after the last committed record of audit partition `partition`, if it has one.
    /// Reads from a little before the high watermark, or from the start when the broker's
    /// watermark leads nowhere, until the partition is quiet.
    pub(super) fn head(
        &mut self,
        config: &RouterConfig,
        telemetry: &Telemetry,
        partition: i32,
    ) -> Result<Option<Head>, KafkaError> {
        let audit = &config.topics.audit;
        if self.reader.is_none() {
            let mut settings = consumer_config(config, Member::AuditChain);
            settings
                .set("group.id", format!("{}.audit-tail", config.kafka.group_id))
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("fetch.wait.max.ms", TAIL_FETCH_WAIT_MS)
                // Its context does not read statistics.
                .set("statistics.interval.ms", "0");
            self.reader = Some(settings.create_with_context(telemetry.client_context("audit chain tail reader"))?);
        }
        let Some(reader) = self.reader.as_ref() else { return Ok(None) };
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
                        last = super::chainer::parse(m.payload()).ok().map(AuditRecord::into_owned);
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
