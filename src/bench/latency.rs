//! The latency phases: live input at a fixed rate, and the time from each input record to its
//! output record. The router is measured this way, and so is its baseline, a bare
//! consume → produce copy fed at the same rate on the same broker: what the broker and the
//! client take at that rate with no router in between.

use super::machine::MachineShare;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tollgate_router::config::RouterConfig;

/// One latency phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The offered rate (events/s).
    pub rate: f64,
    pub samples: usize,
    /// `append` when the broker stamped the records, else `create`.
    pub timestamps: String,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// How busy the box was while the input was offered, and how much of it went to other
    /// processes (set by the harness, which times the offer).
    pub machine: Option<MachineShare>,
    /// Events the input topic held before the live input (set by the harness). nisshi's
    /// latency grows with a partition's length, so a figure is read with it: a long phase
    /// measures a larger topic than a short one.
    pub input_held_before: u64,
}

impl Latency {
    /// `p50 … p99 … max …`, for the table.
    pub fn figures(&self) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |x| format!("{x:.2} ms"));
        format!(
            "{} samples (the input topic held {} events before them), {} timestamps: p50 {}  p99 {}  max {}; {}",
            self.samples,
            self.input_held_before,
            self.timestamps,
            ms(self.p50_ms),
            ms(self.p99_ms),
            ms(self.max_ms),
            MachineShare::figures(self.machine.as_ref())
        )
    }
}

/// Reads back the events whose id starts with `prefix` from `input` and from `outputs`, and
/// measures each event's output record timestamp minus its input record timestamp.
pub fn measure(
    config: &RouterConfig,
    input: &str,
    outputs: &[&str],
    prefix: &str,
    rate: f64,
) -> anyhow::Result<Latency> {
    let read = |topics: &[&str]| -> anyhow::Result<Vec<(String, i64, bool)>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("group.id", format!("{}.latency.{prefix}{}", config.kafka.group_id, topics.len()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()?;
        consumer.subscribe(topics)?;
        let mut out = Vec::new();
        let mut last = Instant::now();
        let start = Instant::now();
        // Until quiet: the first assignment takes a few seconds on some brokers.
        while last.elapsed() < Duration::from_secs(3) || (out.is_empty() && start.elapsed() < Duration::from_secs(30)) {
            let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
            let m = m?;
            last = Instant::now();
            let Some(id) = m.payload().and_then(event_id) else { continue };
            if !id.starts_with(prefix) {
                continue;
            }
            let (ts, append) = match m.timestamp() {
                Timestamp::LogAppendTime(t) => (t, true),
                Timestamp::CreateTime(t) => (t, false),
                Timestamp::NotAvailable => continue,
            };
            out.push((id, ts, append));
        }
        Ok(out)
    };
    let inputs: HashMap<String, (i64, bool)> = read(&[input])?.into_iter().map(|(id, ts, a)| (id, (ts, a))).collect();
    let mut append = true;
    let mut samples: Vec<f64> = read(outputs)?
        .into_iter()
        .filter_map(|(id, ts, a)| {
            let (input_ts, input_append) = inputs.get(&id)?;
            append &= a && *input_append;
            Some((ts - input_ts) as f64)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let pct = |q: f64| -> Option<f64> {
        let last = samples.len().checked_sub(1)?;
        Some(samples[(last as f64 * q).round() as usize])
    };
    Ok(Latency {
        rate,
        samples: samples.len(),
        timestamps: if append { "append" } else { "create" }.to_owned(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: samples.last().copied(),
        machine: None,
        input_held_before: 0,
    })
}

/// Assigns `consumer` every partition of `topic` at its current end: a baseline fed live then
/// copies only what is offered from now on, misses none of it (the ends are known before the
/// first event is offered), and waits for no group join.
pub fn assign_at_end<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, end) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        assignment.add_partition_offset(topic, partition.id(), Offset::Offset(end))?;
    }
    consumer.assign(&assignment)?;
    Ok(())
}

/// The event id of an input event or a routed record (both carry `event_id` at the top), JSON
/// or, for a routed record, Avro.
fn event_id(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        event_id: String,
    }
    match tollgate_schemas::RecordFormat::of(payload) {
        tollgate_schemas::RecordFormat::Json => serde_json::from_slice::<Id>(payload).ok().map(|i| i.event_id),
        tollgate_schemas::RecordFormat::Avro => {
            tollgate_schemas::RoutedRecord::from_avro(payload).ok().map(|r| r.event_id.into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::shape::Shape;
    use tollgate_schemas::RecordFormat;

    /// The latency phase pairs routed records with input events by id, in either output format.
    #[test]
    fn event_ids_are_read_from_routed_records_in_both_formats() {
        for format in [RecordFormat::Json, RecordFormat::Avro] {
            let dir = std::env::temp_dir().join(format!("tollgate-latency-ids-{}-{format:?}", std::process::id()));
            let mut config = crate::demo::reference_example(&dir).unwrap();
            config.output.format = format;
            let shape = Shape::measure(&config, 42, 200).unwrap();
            // The auto-commit topic's records: routed records, not dead letters.
            let (_, value) = shape.samples.routed[0].nth(0);
            assert_eq!(RecordFormat::of(value), format);
            let id = event_id(value).unwrap_or_else(|| panic!("{format:?}: no event id"));
            assert!(id.starts_with("bench"), "{format:?}: {id}");
            assert_eq!(event_id(b"not a record"), None);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
