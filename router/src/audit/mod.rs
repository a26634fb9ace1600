//! The audit trail's offline tools: verifying its hash chains and exporting records.
//!
//! Both read `topics.audit` from the brokers of a router configuration, outside any consumer
//! group, up to the point where the topic has been quiet for the idle time.

pub mod export;
pub mod verify;

use crate::config::RouterConfig;
use crate::kafka::reader::{committed_offsets, Start, TopicReader};
use crate::kafka::Head;
use export::{Exported, Filter};
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;
use std::time::Duration;
use verify::{ChainVerifier, Report};

/// Verifies every partition of `topic` (the configured audit topic when `None`). The chain
/// heads committed by the audit chainer show whether records are missing at the end.
pub fn verify_trail(
    config: &RouterConfig,
    topic: Option<&str>,
    idle: Duration,
    mut progress: impl FnMut(u64),
) -> Result<Report, KafkaError> {
    let topic = topic.unwrap_or(&config.topics.audit);
    let reader = TopicReader::open(config, topic, Start::Beginning, idle)?;
    let mut verifier = ChainVerifier::new();
    let mut n = 0;
    reader.read(|m| {
        use rdkafka::Message;
        verifier.push(m.partition(), m.offset(), m.payload().unwrap_or_default());
        n += 1;
        if n % 10_000 == 0 {
            progress(n);
        }
        true
    })?;
    progress(n);
    let committed = committed_offsets(
        config,
        &format!("{}.audit", config.kafka.group_id),
        &config.topics.audit_intake,
        reader.partitions,
    )?;
    for e in committed.elements() {
        tracing::debug!(partition = e.partition(), offset = ?e.offset(), metadata = e.metadata(), "Committed chain head.");
    }
    let heads: BTreeMap<i32, (i64, String)> = committed
        .elements()
        .iter()
        .filter_map(|e| Head::from_metadata(e.metadata()).map(|h| (e.partition(), (h.next_seq, h.hash))))
        .collect();
    Ok(verifier.finish(&heads))
}

/// Reads the audit records `filter` accepts, in the order of events. `progress` is called
/// with the number of records scanned.
pub fn export_trail(
    config: &RouterConfig,
    filter: &Filter,
    idle: Duration,
    mut progress: impl FnMut(u64),
) -> Result<(Vec<Exported>, u64), KafkaError> {
    // Records are written shortly after their timestamp; a minute of margin covers the chainer.
    let start = filter.from.map_or(Start::Beginning, |f| Start::Time(f - 60_000));
    let reader = TopicReader::open(config, &config.topics.audit, start, idle)?;
    let mut found = Vec::new();
    let mut unreadable = 0;
    let mut scanned = 0;
    reader.read(|m| {
        use rdkafka::Message;
        scanned += 1;
        if scanned % 1_000 == 0 {
            progress(scanned);
        }
        match export::decode(m.payload().unwrap_or_default()) {
            Ok((record, at)) if filter.accepts(&record, at) => {
                found.push(Exported { partition: m.partition(), offset: m.offset(), at, record })
            }
            Ok(_) => {}
            Err(e) => {
                unreadable += 1;
                tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "An audit record cannot be read.");
            }
        }
        true
    })?;
    progress(scanned);
    export::sort(&mut found, filter);
    Ok((found, unreadable))
}
