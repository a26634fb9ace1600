//! The second baseline, "same records": the Kafka work the router does, without Tollgate's work
//! in between.
//!
//! For each input record the router publishes a routed record, and for an event entering review
//! a changelog entry, which its review join reads back. Its audit records go to the intake
//! gathered per poll batch and intake partition; its audit chainer writes each of them to the
//! audit topic in transactions. This baseline moves the same records, measured by routing and
//! chaining a sample in process ([`Shape`]), with the same client settings, on three threads:
//!
//! 1. consume the input in batches of the router's size; produce routed copies (keyed like the
//!    input) to one topic per topic the router routes to, each at that topic's share of events
//!    and mean size, with the router's headers; an audit-sized copy gathered like the router's
//!    audit records; and a changelog-sized one for the same share of records the policy sends
//!    to review;
//! 2. consume the gathered audit copies and produce a chained-sized record for each, committing
//!    the offsets in transactions of the chainer's size;
//! 3. read the changelog copies.
//!
//! Measured from the first input record read until stage 2 has committed every record. So the
//! router's ratio to this baseline is the share of the client library's and broker's limit that
//! Tollgate's own work leaves: what the pass-through ratio cannot separate, since the router
//! must write two to three records per event (routed, chained audit, for one in six a changelog
//! entry), plus a share of an intake batch, where the pass-through writes one.

use super::latency;
use super::machine::Mark;
use super::{phase, Phase};
use crate::synth::{send_waiting, Mix, PaymentGenerator};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::{wait_delivered, LoggingContext};
use tollgate_router::config::RouterConfig;
use tollgate_router::kafka::intake::{self, KeyHash, MAX_BATCH_BYTES};
use tollgate_router::kafka::{dead_letter_headers, routed_headers, sample_headers};
use tollgate_router::pipeline::{Output, Pipeline, Source, Verdict};
use tollgate_schemas::audit::GENESIS;
use tollgate_schemas::headers;
use tollgate_schemas::intake::AuditBatch;
use tollgate_schemas::{AuditRecord, Route};

/// Records a transaction of stage 2 holds at most (the audit chainer's smallest batch).
const CHAIN_BATCH: usize = 20_000;
/// How long the phase may take.
const LIMIT: Duration = Duration::from_secs(600);

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
    /// Routed records and dead letters per topic, in [`destinations`] order.
    pub routed: Vec<Destination>,
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
    /// The headers of the first of them (their values' sizes hardly vary).
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

/// Running totals of one destination while a sample is routed.
#[derive(Default)]
struct Tally {
    records: usize,
    bytes: usize,
    headers: Option<OwnedHeaders>,
}

impl Tally {
    fn add(&mut self, bytes: usize, headers: impl FnOnce() -> OwnedHeaders) {
        self.records += 1;
        self.bytes += bytes;
        self.headers.get_or_insert_with(headers);
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
        for offset in 0..sample as i64 {
            generator.next_into(&mut buf);
            let source = Source { topic: &config.kafka.input_topic, partition: 0, offset };
            match pipeline.process(Some(&buf), source, now, &mut out) {
                Verdict::Routed { route, topic, pre_accept, sample, .. } => {
                    let version = (pipeline.policy_version(), out.model_version.as_str());
                    for topic in [Some(topic), pre_accept].into_iter().flatten() {
                        if let Some(i) = at(topic) {
                            tallies[i].add(out.value.len(), || routed_headers(route, version.0, version.1));
                        }
                    }
                    if let Some(i) = sample.and_then(at) {
                        tallies[i].add(out.sample.len(), || sample_headers(version.0));
                    }
                }
                // A dead letter is the original bytes.
                Verdict::Rejected(rejection) => {
                    tallies[ROUTE_TOPICS].add(buf.len(), || dead_letter_headers(&rejection, &source));
                }
            }
            audit += out.audit.len();
            if !out.changelog.is_empty() {
                changelog += out.changelog.len();
                changes += 1;
            }
            intake.clear();
            intake.push_datum(&out.audit);
            for mut record in AuditRecord::read_batch(intake.as_bytes())? {
                sealed.clear();
                prev = record.seal_and_write(offset, &prev, config.output.format, &mut sealed)?;
                chained += sealed.len();
                keys += record.event_id.len();
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
                .map(|(t, topic)| Destination {
                    topic: topic.to_owned(),
                    share: t.records as f64 / n as f64,
                    bytes: t.bytes / t.records.max(1),
                    headers: t.headers,
                })
                .collect(),
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

/// Whether the `n`th record (from 0) is one of a `share` of records spread evenly.
fn falls(n: u64, share: f64) -> bool {
    ((n + 1) as f64 * share) as u64 > (n as f64 * share) as u64
}

/// The topics of the baseline (created by the caller).
pub struct Topics {
    /// Names the baseline's consumer groups and transactional id.
    pub tag: &'static str,
    /// One per topic the router writes routed records or dead letters to, in [`destinations`]
    /// order (the review join's baseline has one, for its resolved records).
    pub routed: Vec<String>,
    pub intake: String,
    pub audit: String,
    pub changelog: String,
}

/// Where stage 1 starts reading the input.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    /// The preloaded input, from its beginning.
    Preloaded,
    /// Live input: from the input's end, then `ready` is set (the caller offers input once it
    /// is, so stage 1 copies only what is offered, all of it).
    Live(&'a std::sync::atomic::AtomicBool),
}

impl Topics {
    /// Topics `<prefix>-routed-<n>` (n from 0 to 4), `<prefix>-intake`, `<prefix>-audit` and
    /// `<prefix>-changelog`.
    pub fn named(tag: &'static str, prefix: &str) -> Topics {
        Topics {
            tag,
            routed: (0..=ROUTE_TOPICS).map(|n| format!("{prefix}-routed-{n}")).collect(),
            intake: format!("{prefix}-intake"),
            audit: format!("{prefix}-audit"),
            changelog: format!("{prefix}-changelog"),
        }
    }
}

/// Runs the baseline until `events` records of the input went through every stage.
pub fn run(
    config: &RouterConfig,
    topics: &Topics,
    shape: &Shape,
    events: u64,
    start: Start<'_>,
    stop: &CancellationToken,
) -> anyhow::Result<Phase> {
    let chained = Arc::new(AtomicU64::new(0));
    let started: Arc<std::sync::OnceLock<Mark>> = Arc::default();
    let deadline = Instant::now() + LIMIT;
    let done = stop.child_token();
    let joined = AtomicUsize::new(0);
    let chained_copy = ChainedCopy::sized(shape.chained_bytes, shape.chained_key_bytes);
    std::thread::scope(|s| -> anyhow::Result<Phase> {
        let copy = s.spawn(|| copy_input(config, topics, (shape, events, start), (&started, &joined), deadline, &done));
        let chain =
            s.spawn(|| chain_copies(config, topics, &chained_copy, (events, &joined), &chained, deadline, &done));
        let read = s.spawn(|| read_copies(config, topics, &joined, &done));
        let chain_result = chain.join().map_err(|_| anyhow::anyhow!("the chain stage panicked"))?;
        // Stage 2 is last: once it is done (or failed), the others stop too.
        let spent = started.get().map(Mark::spent);
        done.cancel();
        copy.join().map_err(|_| anyhow::anyhow!("the copy stage panicked"))??;
        read.join().map_err(|_| anyhow::anyhow!("the read stage panicked"))??;
        chain_result?;
        Ok(phase("same records", chained.load(Ordering::Acquire), spent.unwrap_or_default()))
    })
}

/// Stage 1: the routing loop's records. Each input record's routed copies go to the topics the
/// router's would, each topic's share spread evenly, with the router's headers. A routed copy
/// is the input record padded with spaces to the mean size of that topic's records: still the
/// input's JSON, so a latency phase finds its event id in it. Live, it says it is ready once
/// the other two stages have joined their groups, as the router's chainer and join have when
/// its latency is measured.
fn copy_input(
    config: &RouterConfig,
    topics: &Topics,
    (shape, events, start): (&Shape, u64, Start<'_>),
    (started, joined): (&std::sync::OnceLock<Mark>, &AtomicUsize),
    deadline: Instant,
    done: &CancellationToken,
) -> anyhow::Result<()> {
    let (consumer, producer) = copy_clients(config, topics, &config.kafka.input_topic, start)?;
    if let Start::Live(ready) = start {
        while joined.load(Ordering::Acquire) < 2 && Instant::now() < deadline && !done.is_cancelled() {
            std::thread::sleep(Duration::from_millis(10));
        }
        ready.store(true, Ordering::Release);
    }
    let mut routed = Vec::with_capacity(shape.routed_bytes);
    let (audit, changelog) = (vec![b'a'; shape.audit_bytes], vec![b'c'; shape.changelog_bytes]);
    let mut gathered = GatheredCopies::new(config, &topics.intake)?;
    let mut copied = 0u64;
    while copied < events && Instant::now() < deadline && !done.is_cancelled() {
        let mut wait = Duration::from_millis(100);
        let mut polled = 0;
        while polled < config.processing.batch_size && copied < events {
            let Some(m) = consumer.poll(wait) else { break };
            let m = m?;
            started.get_or_init(Mark::now);
            let key = m.key().unwrap_or_default();
            for (destination, topic) in shape.routed.iter().zip(&topics.routed) {
                if !falls(copied, destination.share) {
                    continue;
                }
                routed.clear();
                routed.extend_from_slice(m.payload().unwrap_or_default());
                routed.resize(routed.len().max(destination.bytes), b' ');
                let mut record = BaseRecord::to(topic).key(key).payload(routed.as_slice());
                if let Some(headers) = &destination.headers {
                    record = record.headers(headers.clone());
                }
                send_waiting(&producer, record, done)?;
            }
            gathered.add(&producer, key, &audit, done)?;
            if falls(copied, shape.changelog_share) {
                send_waiting(
                    &producer,
                    BaseRecord::to(&topics.changelog).key(key).payload(changelog.as_slice()),
                    done,
                )?;
            }
            copied += 1;
            polled += 1;
            wait = Duration::ZERO;
        }
        gathered.send_all(&producer, done)?;
    }
    crate::synth::flush_delivered(&producer, Duration::from_secs(60), "the same-records baseline")?;
    Ok(())
}

/// A first stage's clients, with the router's settings: a consumer of `from` in the baseline's
/// group (live: assigned every partition of `from` at its end) and a producer.
pub(super) fn copy_clients(
    config: &RouterConfig,
    topics: &Topics,
    from: &str,
    start: Start<'_>,
) -> anyhow::Result<(BaseConsumer, ThreadedProducer<LoggingContext>)> {
    let mut settings = tollgate_router::kafka::consumer_config(config);
    settings
        .set("group.id", format!("{}.{}", config.kafka.group_id, topics.tag))
        .set("enable.auto.offset.store", "true");
    let consumer: BaseConsumer = settings.create()?;
    let producer: ThreadedProducer<LoggingContext> = tollgate_router::kafka::producer_config(config)
        .create_with_context(LoggingContext::new("baseline producer"))?;
    match start {
        Start::Preloaded => consumer.subscribe(&[from])?,
        Start::Live(_) => latency::assign_at_end(&consumer, from)?,
    }
    Ok((consumer, producer))
}

/// Audit copies gathered per intake partition (by their key, as the producer would place it)
/// and sent as one intake record per partition and poll batch, as the router sends its audit
/// records.
pub(super) struct GatheredCopies<'t> {
    topic: &'t str,
    partitions: i32,
    /// Per partition: the copies, end to end, and how many.
    batches: Vec<(Vec<u8>, usize)>,
}

impl<'t> GatheredCopies<'t> {
    pub(super) fn new(config: &RouterConfig, topic: &'t str) -> anyhow::Result<Self> {
        let partitions = intake::partition_count(&tollgate_router::kafka::consumer_config(config), topic, LIMIT)?;
        Ok(GatheredCopies { topic, partitions, batches: vec![(Vec::new(), 0); partitions as usize] })
    }

    /// Adds a copy for `key`, sending its partition's batch first when the copy would take it
    /// past the router's bound.
    pub(super) fn add(
        &mut self,
        producer: &ThreadedProducer<LoggingContext>,
        key: &[u8],
        copy: &[u8],
        done: &CancellationToken,
    ) -> anyhow::Result<()> {
        let p = KeyHash::Murmur2.partition(key, self.partitions) as usize;
        if self.batches[p].0.len() + copy.len() > MAX_BATCH_BYTES {
            self.send(p, producer, done)?;
        }
        self.batches[p].0.extend_from_slice(copy);
        self.batches[p].1 += 1;
        Ok(())
    }

    /// Sends every partition's batch (at the end of a poll batch).
    pub(super) fn send_all(
        &mut self,
        producer: &ThreadedProducer<LoggingContext>,
        done: &CancellationToken,
    ) -> anyhow::Result<()> {
        (0..self.batches.len()).try_for_each(|p| self.send(p, producer, done))
    }

    fn send(
        &mut self,
        p: usize,
        producer: &ThreadedProducer<LoggingContext>,
        done: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (bytes, n) = &mut self.batches[p];
        if *n > 0 {
            let count = n.to_string();
            let h = OwnedHeaders::new().insert(Header { key: headers::AUDIT_BATCH, value: Some(&count) });
            let record =
                BaseRecord::<[u8], [u8]>::to(self.topic).partition(p as i32).payload(bytes.as_slice()).headers(h);
            send_waiting(producer, record, done)?;
            bytes.clear();
            *n = 0;
        }
        Ok(())
    }
}

/// What stage 2 writes for each gathered copy: a record of a chained audit record's size, with
/// a key of an event id's.
pub(super) struct ChainedCopy {
    pub payload: Vec<u8>,
    pub key: Vec<u8>,
}

impl ChainedCopy {
    pub(super) fn sized(payload: usize, key: usize) -> ChainedCopy {
        ChainedCopy { payload: vec![b'h'; payload], key: vec![b'k'; key] }
    }
}

/// Stage 2: the audit chainer's copy, in transactions, until `events` copies are chained. Each
/// gathered copy goes on as a record of its own, of the chained record's size.
pub(super) fn chain_copies(
    config: &RouterConfig,
    topics: &Topics,
    chained_copy: &ChainedCopy,
    (events, joined): (u64, &AtomicUsize),
    chained: &AtomicU64,
    deadline: Instant,
    done: &CancellationToken,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(30);
    let producer_settings =
        tollgate_router::kafka::chain_producer_config(config, &format!("{}.{}", config.kafka.group_id, topics.tag));
    let producer: ThreadedProducer<LoggingContext> =
        producer_settings.create_with_context(LoggingContext::new("baseline chain producer"))?;
    producer.init_transactions(timeout)?;
    let mut settings = tollgate_router::kafka::consumer_config(config);
    settings
        .set("group.id", format!("{}.{}-chain", config.kafka.group_id, topics.tag))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = settings.create()?;
    consumer.subscribe(&[&topics.intake])?;
    let mut member = Member::default();
    while chained.load(Ordering::Acquire) < events && Instant::now() < deadline && !done.is_cancelled() {
        member.note(&consumer, joined);
        let mut batch = Vec::new();
        let mut wait = Duration::from_millis(100);
        let mut weight = 0;
        while weight < CHAIN_BATCH {
            match consumer.poll(wait) {
                Some(m) => {
                    let m = m?;
                    weight += intake::announced_records(&m).unwrap_or(1).max(1);
                    batch.push(m);
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction()?;
        let mut next = std::collections::BTreeMap::new();
        let mut copies = 0;
        for m in &batch {
            // Each gathered audit copy goes on as a record of its own.
            for _ in 0..intake::announced_records(m).unwrap_or(1).max(1) {
                let record = BaseRecord::to(&topics.audit)
                    .partition(m.partition())
                    .key(chained_copy.key.as_slice())
                    .payload(chained_copy.payload.as_slice());
                send_waiting(&producer, record, done)?;
                copies += 1;
            }
            next.insert(m.partition(), m.offset() + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next {
            offsets.add_partition_offset(&topics.intake, partition, Offset::Offset(offset))?;
        }
        let group = consumer.group_metadata().ok_or_else(|| anyhow::anyhow!("no consumer group metadata"))?;
        // As the chainer waits: a failed record ends the run, a slow flush would cost it time.
        wait_delivered(&producer, timeout, || producer.context().failed_deliveries() > 0)?;
        producer.send_offsets_to_transaction(&offsets, &group, timeout)?;
        producer.commit_transaction(timeout)?;
        chained.fetch_add(copies, Ordering::AcqRel);
    }
    Ok(())
}

/// Stage 3: the review join reading the changelog back.
pub(super) fn read_copies(
    config: &RouterConfig,
    topics: &Topics,
    joined: &AtomicUsize,
    done: &CancellationToken,
) -> anyhow::Result<()> {
    let topic = topics.changelog.as_str();
    let mut settings = tollgate_router::kafka::consumer_config(config);
    settings.set("group.id", format!("{}.{}-read", config.kafka.group_id, topics.tag));
    let consumer: BaseConsumer = settings.create()?;
    consumer.subscribe(&[topic])?;
    let mut member = Member::default();
    while !done.is_cancelled() {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m?;
        }
        member.note(&consumer, joined);
    }
    Ok(())
}

/// Whether a stage's consumer has joined its group (has an assignment) yet.
#[derive(Default)]
struct Member {
    joined: bool,
}

impl Member {
    /// Counts the stage into `joined` the first time its consumer has an assignment.
    fn note(&mut self, consumer: &BaseConsumer, joined: &AtomicUsize) {
        if !self.joined && consumer.assignment().is_ok_and(|a| a.count() > 0) {
            self.joined = true;
            joined.fetch_add(1, Ordering::AcqRel);
        }
    }
}
