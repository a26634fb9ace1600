//! What the router writes per input record, measured by routing a sample of the bench's input
//! in process ([`Shape`]): each topic's share of events, the records' mean sizes and headers,
//! and the records themselves ([`Samples`]), which the same-records baseline writes in turn.
//!
//! Until session 20 the baseline wrote filler of the same sizes: one byte repeated. Under lz4
//! (every Tollgate producer's default since session 17) such a record compresses to almost
//! nothing, while the router's records (JSON text, audit snapshots, SHA-256 hashes) keep a
//! sizeable share of their bytes. So the filler baseline did less of the client's and the
//! broker's work per record than the router: less to compress, send, store and fetch.

use crate::synth::{Mix, PaymentGenerator};
use rdkafka::message::OwnedHeaders;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;
use tollgate_router::config::RouterConfig;
use tollgate_router::kafka::{dead_letter_headers, routed_headers, sample_headers};
use tollgate_router::pipeline::{Output, Pipeline, Source, Verdict};
use tollgate_schemas::audit::GENESIS;
use tollgate_schemas::intake::AuditBatch;
use tollgate_schemas::{AuditRecord, Route};

/// At most this many records are kept of each kind. A kept record comes round again only after
/// every other one of its kind (2,000, or about 100 dead letters in a 20,000-event sample), far
/// past lz4's 64 KiB window, so the repeats compress no better than the router's own stream.
const KEEP: usize = 2_000;

/// Records of one kind (key and value), in the order the sample wrote them.
#[derive(Clone, Default)]
pub struct Kept {
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Kept {
    /// Keeps a record, unless `KEEP` of them already are.
    pub fn keep(&mut self, key: &[u8], value: &[u8]) {
        if self.records.len() < KEEP {
            self.records.push((key.to_vec(), value.to_vec()));
        }
    }

    /// The `n`th record of an endless round of the kept ones (empty when none was kept).
    pub fn nth(&self, n: u64) -> (&[u8], &[u8]) {
        match self.records.len() {
            0 => (&[], &[]),
            len => {
                let (key, value) = &self.records[(n % len as u64) as usize];
                (key, value)
            }
        }
    }
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} kept records", self.records.len())
    }
}

/// What the sample wrote, per kind of record the baseline writes.
#[derive(Debug, Default)]
pub struct Samples {
    /// Per routed topic, in the baseline's destination order: the routed records (or dead
    /// letters) written to it.
    pub routed: Vec<Kept>,
    /// Audit records as the routing loop gathers them into the intake (Avro data).
    pub audit: Kept,
    /// Chained audit records, keyed by their event ids.
    pub chained: Kept,
    /// Review changelog entries.
    pub changelog: Kept,
}

/// The router's mean output per input record, from routing a sample of the input in process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shape {
    /// Mean size of a routed record or dead letter.
    pub routed_bytes: usize,
    /// Mean size of an audit record in the intake.
    pub audit_bytes: usize,
    /// Mean size of a chained audit record (the audit topic's), and of its key (the event id).
    pub chained_bytes: usize,
    pub chained_key_bytes: usize,
    pub changelog_bytes: usize,
    /// Share of input records that write a changelog entry.
    pub changelog_share: f64,
    /// Routed records and dead letters per topic, in `destinations` order.
    pub routed: Vec<Destination>,
    /// The sample's records, which the baseline writes in turn.
    #[serde(skip)]
    pub samples: Arc<Samples>,
}

/// The routed records (or dead letters) the router writes to one topic.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Destination {
    /// The router's topic.
    pub topic: String,
    /// Records per input record.
    pub share: f64,
    /// Their mean size.
    pub bytes: usize,
    /// The headers of the first of them (their values' sizes hardly vary); none for routed
    /// records when the router writes none (`output.headers`).
    #[serde(skip)]
    pub headers: Option<OwnedHeaders>,
}

/// The topics a router's routed records and dead letters go to: each route's (empty for a
/// disabled route), then the dead-letter topic. The baseline has one for each.
fn destinations(config: &RouterConfig) -> [&str; ROUTE_TOPICS + 1] {
    let t = &config.topics;
    let [a, b, c, d] = Route::ALL.map(|r| t.for_route(r).unwrap_or_default());
    [a, b, c, d, &t.dead_letter]
}

/// How many of the baseline's routed topics hold routed records (the last holds dead letters).
pub const ROUTE_TOPICS: usize = Route::ALL.len();

/// Running totals of one destination while a sample is routed, and its records.
#[derive(Default)]
struct Tally {
    records: usize,
    bytes: usize,
    headers: Option<OwnedHeaders>,
    kept: Kept,
}

impl Tally {
    /// Counts and keeps `value` (keyless: the baseline keys its copies like their input).
    fn add(&mut self, value: &[u8], headers: impl FnOnce() -> Option<OwnedHeaders>) {
        self.records += 1;
        self.bytes += value.len();
        if self.headers.is_none() {
            self.headers = headers();
        }
        self.kept.keep(&[], value);
    }
}

impl Shape {
    /// Routes the first `sample` events of the generator stream (the same seed as the preload),
    /// and chains their audit records as the chainer would.
    pub fn measure(config: &RouterConfig, seed: u64, sample: u64) -> anyhow::Result<Shape> {
        let pipeline = Pipeline::from_config(config)?;
        let targets = destinations(config);
        let at = |topic: &str| targets.iter().position(|t| *t == topic);
        let mut generator = PaymentGenerator::new(seed, Mix::default(), "bench");
        let (mut buf, mut out, now) = (Vec::new(), Output::default(), SystemTime::now());
        let mut tallies: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
        let (mut audit, mut changelog, mut changes) = (0usize, 0usize, 0u64);
        let (mut intake, mut sealed, mut prev) = (AuditBatch::default(), Vec::new(), GENESIS.to_owned());
        let (mut chained, mut keys) = (0usize, 0usize);
        let mut kept = Samples::default();
        let headers = config.output.headers;
        for offset in 0..sample as i64 {
            generator.next_into(&mut buf);
            let source = Source { topic: &config.kafka.input_topic, partition: 0, offset };
            match pipeline.process(Some(&buf), source, now, &mut out) {
                Verdict::Routed { route, topic, pre_accept, sample, .. } => {
                    let version = (pipeline.policy_version(), out.model_version.as_str());
                    for topic in [Some(topic), pre_accept].into_iter().flatten() {
                        if let Some(i) = at(topic) {
                            tallies[i].add(&out.value, || headers.then(|| routed_headers(route, version.0, version.1)));
                        }
                    }
                    if let Some(i) = sample.and_then(at) {
                        tallies[i].add(&out.sample, || headers.then(|| sample_headers(version.0)));
                    }
                }
                // A dead letter is the original bytes.
                Verdict::Rejected(rejection) => {
                    tallies[ROUTE_TOPICS].add(&buf, || Some(dead_letter_headers(&rejection, &source)));
                }
            }
            audit += out.audit.len();
            kept.audit.keep(&[], &out.audit);
            if !out.changelog.is_empty() {
                changelog += out.changelog.len();
                changes += 1;
                kept.changelog.keep(&[], &out.changelog);
            }
            intake.clear();
            intake.push_datum(&out.audit);
            for mut record in AuditRecord::read_batch(intake.as_bytes())? {
                sealed.clear();
                prev = record.seal_and_write(offset, &prev, config.output.format, &mut sealed)?;
                chained += sealed.len();
                keys += record.event_id.len();
                kept.chained.keep(record.event_id.as_bytes(), &sealed);
            }
        }
        let n = sample.max(1) as usize;
        let all: usize = tallies.iter().map(|t| t.records).sum();
        Ok(Shape {
            routed_bytes: tallies.iter().map(|t| t.bytes).sum::<usize>() / all.max(1),
            audit_bytes: audit / n,
            chained_bytes: chained / n,
            chained_key_bytes: keys / n,
            changelog_bytes: changelog / changes.max(1) as usize,
            changelog_share: changes as f64 / n as f64,
            routed: tallies
                .into_iter()
                .zip(targets)
                .map(|(t, topic)| {
                    kept.routed.push(t.kept);
                    Destination {
                        topic: topic.to_owned(),
                        share: t.records as f64 / n as f64,
                        bytes: t.bytes / t.records.max(1),
                        headers: t.headers,
                    }
                })
                .collect(),
            samples: Arc::new(kept),
        })
    }

    /// One line: what the baseline writes per input record.
    pub fn describe(&self) -> String {
        let shares: Vec<String> = self
            .routed
            .iter()
            .filter(|d| d.share > 0.0)
            // The run's topics are `<run id>.<name>`.
            .map(|d| {
                format!("{} {:.1}% at {} B", d.topic.rsplit('.').next().unwrap_or(&d.topic), 100.0 * d.share, d.bytes)
            })
            .collect();
        format!(
            "routed {} B ({}), audit {} B into the intake and {} B chained, changelog {} B for {:.1}% of events",
            self.routed_bytes,
            shares.join(", "),
            self.audit_bytes,
            self.chained_bytes,
            self.changelog_bytes,
            100.0 * self.changelog_share
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_records_come_round_in_order_and_stop_growing_at_the_bound() {
        let mut kept = Kept::default();
        assert_eq!(kept.nth(7), (&[][..], &[][..]));
        for i in 0..KEEP + 10 {
            kept.keep(&[1], i.to_string().as_bytes());
        }
        // Only the first KEEP were kept: the round starts again after them.
        assert_eq!(kept.nth(3).1, b"3");
        assert_eq!(kept.nth(KEEP as u64 - 1).1, (KEEP - 1).to_string().as_bytes());
        assert_eq!(kept.nth(KEEP as u64 + 3).1, b"3");
    }
}
