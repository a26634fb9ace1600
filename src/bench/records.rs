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
//!    input) to one topic per topic the router routes to, each at that topic's share of events,
//!    with the router's headers; an audit copy gathered like the router's audit records; and a
//!    changelog copy for the same share of records the policy sends to review;
//! 2. consume the gathered audit copies and produce a chained record for each, committing the
//!    offsets in transactions of the chainer's size;
//! 3. read the changelog copies.
//!
//! The copies are the sample's own records, taken in turn ([`super::shape::Samples`]), so they
//! compress as the router's do; filler of their sizes would not (see there). A live run's
//! routed copies are the exception: the latency measure needs each input's event id in them
//! (see `copy_input`).
//!
//! Measured from the first input record read until stage 2 has committed every record. So the
//! router's ratio to this baseline is the share of the client library's and broker's limit that
//! Tollgate's own work leaves: what the pass-through ratio cannot separate, since the router
//! must write two to three records per event (routed, chained audit, for one in six a changelog
//! entry), plus a share of an intake batch, where the pass-through writes one.
//!
//! [`AuditPath::Direct`] runs it without the intake's round trip: stage 1 writes each event's
//! chained record itself, and there is no stage 2. That is the Kafka work left to a router
//! whose routing loop chained its own audit records outside a transaction, so its CPU per
//! event against the baseline's bounds what such a design could save. [`AuditPath::HandOff`]
//! keeps stage 2 and its transactions but feeds it in process: the Kafka work of a routing loop
//! handing its audit records to the chainer of its own process, the chainer's idle intake
//! consumer and the offsets it commits included.

use super::handed::{hand_off_channel, Stage2};
use super::latency;
use super::machine::{Mark, ThreadClock};
use super::shape::{Kept, Shape, ROUTE_TOPICS};
use super::{phase, Phase};
use crate::synth::send_waiting;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::{wait_delivered, LoggingContext};
use tollgate_router::config::RouterConfig;
use tollgate_router::kafka::group;
use tollgate_router::kafka::intake::{self, KeyHash, MAX_BATCH_BYTES};

/// Records a transaction of stage 2 holds at most (the audit chainer's smallest batch).
pub(super) const CHAIN_BATCH: usize = 20_000;
/// How long the phase may take.
const LIMIT: Duration = Duration::from_secs(600);

/// Whether the `n`th record (from 0) is one of a `share` of records spread evenly.
fn falls(n: u64, share: f64) -> bool {
    ((n + 1) as f64 * share) as u64 > (n as f64 * share) as u64
}

/// How many of a `share` of records spread evenly came before the `n`th record.
fn nth_of(n: u64, share: f64) -> u64 {
    (n as f64 * share) as u64
}

/// The topics of the baseline (created by the caller).
pub struct Topics {
    /// Names the baseline's consumer groups and transactional id.
    pub tag: &'static str,
    /// One per topic the router writes routed records or dead letters to, in the order of
    /// [`Shape::routed`] (the review join's baseline has one, for its resolved records).
    pub routed: Vec<String>,
    pub intake: String,
    pub audit: String,
    pub changelog: String,
}

/// How the baseline's audit copies reach its audit topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditPath {
    /// As the router's: gathered into the intake by stage 1, then copied one by one in
    /// transactions by stage 2.
    Intake,
    /// Straight from stage 1, one chained record per event in the partition number its input
    /// record came from, as a routing loop chaining its own partitions would write them; no
    /// intake and no stage 2.
    Direct,
    /// Handed from stage 1 to stage 2 in process (no intake records), which writes one chained
    /// record per event in transactions of the chainer's size, in the partition number the input
    /// record came from, and commits its idle intake consumer's offsets in each, as the chainer
    /// does (the `handed` module). Stage 1 reads nothing before that consumer has joined its group.
    HandOff,
}

impl AuditPath {
    /// The name of the baseline's phase with this path.
    pub fn phase(self) -> &'static str {
        match self {
            AuditPath::Intake => "same records",
            AuditPath::Direct => "same records, no intake",
            AuditPath::HandOff => "same records, handed off",
        }
    }

    /// The stages that must join their groups before live input is offered (stage 1 aside).
    fn other_stages(self) -> usize {
        match self {
            AuditPath::Intake | AuditPath::HandOff => 2,
            AuditPath::Direct => 1,
        }
    }
}

/// Clients the stages are done with, dropped once the phase is measured: closing a group's
/// member (it leaves the group) and a transactional producer take round trips that are no part
/// of the phase's work, and the router's phase, measured to its last chained record, counts
/// none of its own.
#[derive(Default)]
pub(super) struct Teardown(std::sync::Mutex<Vec<Box<dyn Send>>>);

impl Teardown {
    /// Keeps `client` until the teardown is dropped.
    pub(super) fn keep(&self, client: impl Send + 'static) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(client));
    }
}

/// Where stage 1 starts reading the input.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    /// The preloaded input, from its beginning.
    Preloaded,
    /// Live input: from the input's end, then `ready` is set (the caller offers input once it
    /// is, so stage 1 copies only what is offered, all of it).
    Live(&'a AtomicBool),
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
    (shape, audit): (&Shape, AuditPath),
    events: u64,
    start: Start<'_>,
    stop: &CancellationToken,
) -> anyhow::Result<Phase> {
    let chained = AtomicU64::new(0);
    let started = std::sync::OnceLock::new();
    let deadline = Instant::now() + LIMIT;
    let done = stop.child_token();
    let joined = AtomicUsize::new(0);
    let clock = ThreadClock::default();
    let assigned = AtomicBool::new(false);
    let teardown = Teardown::default();
    let (handed, to_chain) = hand_off_channel();
    let handed = (audit == AuditPath::HandOff).then_some(handed);
    let stage_1 =
        Stage1 { shape, audit, events, start, handed, chain_assigned: &assigned, clock: &clock, teardown: &teardown };
    let stage_2 = Stage2 {
        config,
        topics,
        events,
        chained: &chained,
        deadline,
        done: &done,
        clock: Some(&clock),
        joined: &joined,
        assigned: &assigned,
        teardown: &teardown,
    };
    std::thread::scope(|s| -> anyhow::Result<Phase> {
        // Named, so the phase's CPU is reported by stage ([`super::machine::cpu_by_thread`]).
        let named = |name: &str| std::thread::Builder::new().name(name.to_owned());
        let copy = named("base-copy")
            .spawn_scoped(s, || copy_input(config, topics, &stage_1, (&started, &joined), deadline, &done))?;
        let read = named("base-read").spawn_scoped(s, || read_copies(config, topics, &joined, &done))?;
        let copies = &shape.samples.chained;
        let chain = match audit {
            AuditPath::Intake => Some(named("base-chain").spawn_scoped(s, || {
                chain_copies(config, topics, copies, (events, &joined), (&chained, &clock, &teardown), deadline, &done)
            })?),
            AuditPath::HandOff => {
                Some(named("base-chain").spawn_scoped(s, move || stage_2.chain_handed(copies, &to_chain))?)
            }
            AuditPath::Direct => None,
        };
        let panicked = |stage: &str| anyhow::anyhow!("the {stage} stage panicked");
        // The last stage (stage 2, or stage 1 when there is none) ends the phase: once it is
        // done (or failed), the others stop too.
        let (last, copy) = match chain {
            Some(chain) => (chain.join().map_err(|_| panicked("chain"))?, Some(copy)),
            None => (copy.join().map_err(|_| panicked("copy"))?.map(|n| chained.store(n, Ordering::Release)), None),
        };
        // The phase's end: the threads still running (the read stage's among them) as they are.
        clock.observe();
        let spent = started.get().map(Mark::spent);
        done.cancel();
        if let Some(copy) = copy {
            copy.join().map_err(|_| panicked("copy"))??;
        }
        read.join().map_err(|_| panicked("read"))??;
        last?;
        let events = chained.load(Ordering::Acquire);
        Ok(Phase { cpu_by_thread: clock.spent(events), ..phase(audit.phase(), events, spent.unwrap_or_default()) })
    })
}

/// What stage 1 writes, and from where.
struct Stage1<'a> {
    shape: &'a Shape,
    audit: AuditPath,
    events: u64,
    start: Start<'a>,
    /// Where each event's audit record goes (its input partition and number), for
    /// [`AuditPath::HandOff`].
    handed: Option<std::sync::mpsc::SyncSender<(i32, u64)>>,
    /// Set once stage 2's intake consumer has an assignment, for [`AuditPath::HandOff`]: stage 1
    /// reads nothing before, as the router's routing loop waits for its chainer's.
    chain_assigned: &'a AtomicBool,
    /// Started with the phase; read again as each stage ends.
    clock: &'a ThreadClock,
    teardown: &'a Teardown,
}

/// Stage 1: the routing loop's records. Each input record's routed copies go to the topics the
/// router's would, each topic's share spread evenly, with the router's headers. A routed copy
/// is the next of the sample's records for that topic; live, it is the input record padded
/// with spaces to their mean size instead, still the input's JSON, so the latency phase finds
/// its event id in it (the padding compresses better than the router's records do). Each
/// event's audit copy takes the stage's [`AuditPath`]. Live, it says it is ready once the other
/// stages have joined their groups, as the router's chainer and join have when its latency is
/// measured. Returns the records it copied, all delivered.
fn copy_input(
    config: &RouterConfig,
    topics: &Topics,
    stage: &Stage1<'_>,
    (started, joined): (&std::sync::OnceLock<Mark>, &AtomicUsize),
    deadline: Instant,
    done: &CancellationToken,
) -> anyhow::Result<u64> {
    let Stage1 { shape, audit: path, events, start, clock, chain_assigned, teardown, .. } = *stage;
    let samples = &shape.samples;
    let (consumer, producer) = copy_clients(config, topics, &config.kafka.input_topic, start)?;
    if path == AuditPath::HandOff {
        while !chain_assigned.load(Ordering::Acquire) && Instant::now() < deadline && !done.is_cancelled() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Start::Live(ready) = start {
        let others = path.other_stages();
        while joined.load(Ordering::Acquire) < others && Instant::now() < deadline && !done.is_cancelled() {
            std::thread::sleep(Duration::from_millis(10));
        }
        ready.store(true, Ordering::Release);
    }
    let mut routed = Vec::with_capacity(shape.routed_bytes);
    let mut gathered = GatheredCopies::new(config, &topics.intake)?;
    let mut copied = 0u64;
    while copied < events && Instant::now() < deadline && !done.is_cancelled() {
        let mut wait = Duration::from_millis(100);
        let mut polled = 0;
        while polled < config.processing.batch_size && copied < events {
            let Some(m) = consumer.poll(wait) else { break };
            let m = m?;
            started.get_or_init(|| {
                clock.start();
                Mark::now()
            });
            let key = m.key().unwrap_or_default();
            for ((destination, topic), kept) in shape.routed.iter().zip(&topics.routed).zip(&samples.routed) {
                if !falls(copied, destination.share) {
                    continue;
                }
                let payload = match start {
                    // Each topic's records in turn: this is its `copied × share`th.
                    Start::Preloaded => kept.nth(nth_of(copied, destination.share)).1,
                    Start::Live(_) => {
                        routed.clear();
                        routed.extend_from_slice(m.payload().unwrap_or_default());
                        routed.resize(routed.len().max(destination.bytes), b' ');
                        routed.as_slice()
                    }
                };
                let mut record = BaseRecord::to(topic).key(key).payload(payload);
                if let Some(headers) = &destination.headers {
                    record = record.headers(headers.clone());
                }
                send_waiting(&producer, record, done)?;
            }
            match path {
                AuditPath::Intake => gathered.add(&producer, key, samples.audit.nth(copied).1, done)?,
                AuditPath::HandOff => {
                    let handed = stage.handed.as_ref().map(|h| h.send((m.partition(), copied)));
                    handed.transpose().map_err(|_| anyhow::anyhow!("the hand-off's stage 2 has stopped"))?;
                }
                AuditPath::Direct => {
                    let (id, chained) = samples.chained.nth(copied);
                    let record = BaseRecord::to(&topics.audit).partition(m.partition()).key(id).payload(chained);
                    send_waiting(&producer, record, done)?;
                }
            }
            if falls(copied, shape.changelog_share) {
                send_waiting(
                    &producer,
                    BaseRecord::to(&topics.changelog)
                        .key(key)
                        .payload(samples.changelog.nth(nth_of(copied, shape.changelog_share)).1),
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
    // The stage's work is done, its clients not yet closed.
    clock.observe();
    teardown.keep(consumer);
    teardown.keep(producer);
    Ok(copied)
}

/// A first stage's clients, with the router's settings: a consumer of `from` in the baseline's
/// group (live: assigned every partition of `from` at its end) and a producer.
pub(super) fn copy_clients(
    config: &RouterConfig,
    topics: &Topics,
    from: &str,
    start: Start<'_>,
) -> anyhow::Result<(BaseConsumer, ThreadedProducer<LoggingContext>)> {
    let mut settings = tollgate_router::kafka::consumer_config(config, group::Member::Routing);
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

/// Where the router puts an audit record keyed by an event id on the intake: the partition
/// the producers' partitioner (murmur2, Tollgate's) gives the key among the topic's partitions.
pub(super) struct IntakePlacement {
    partitions: i32,
}

impl IntakePlacement {
    /// Reads the partition count of the intake `topic`, waiting up to `wait` for it to exist.
    pub(super) fn read(config: &RouterConfig, topic: &str, wait: Duration) -> anyhow::Result<Self> {
        let partitions = intake::partition_count(
            &tollgate_router::kafka::consumer_config(config, group::Member::Routing),
            topic,
            wait,
        )?;
        Ok(IntakePlacement { partitions })
    }

    pub(super) fn partitions(&self) -> usize {
        self.partitions as usize
    }

    /// The partition of a record keyed `key`.
    pub(super) fn of(&self, key: &[u8]) -> i32 {
        KeyHash::Murmur2.partition(key, self.partitions)
    }
}

/// Audit copies gathered per intake partition (by their key, as the producer would place it)
/// and sent as one intake record per partition and poll batch, as the router sends its audit
/// records.
pub(super) struct GatheredCopies<'t> {
    topic: &'t str,
    placement: IntakePlacement,
    /// Per partition: the copies, end to end, and how many.
    batches: Vec<(Vec<u8>, usize)>,
}

impl<'t> GatheredCopies<'t> {
    pub(super) fn new(config: &RouterConfig, topic: &'t str) -> anyhow::Result<Self> {
        let placement = IntakePlacement::read(config, topic, LIMIT)?;
        Ok(GatheredCopies { topic, batches: vec![(Vec::new(), 0); placement.partitions()], placement })
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
        let p = self.placement.of(key) as usize;
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
            let record = BaseRecord::<[u8], [u8]>::to(self.topic)
                .partition(p as i32)
                .payload(bytes.as_slice())
                .headers(intake::batch_headers(*n));
            send_waiting(producer, record, done)?;
            bytes.clear();
            *n = 0;
        }
        Ok(())
    }
}

/// Stage 2: the audit chainer's copy, in transactions, until `events` copies are chained. Each
/// gathered copy goes on as a record of its own: the next of `chained_copies`.
pub(super) fn chain_copies(
    config: &RouterConfig,
    topics: &Topics,
    chained_copies: &Kept,
    (events, joined): (u64, &AtomicUsize),
    (chained, clock, teardown): (&AtomicU64, &ThreadClock, &Teardown),
    deadline: Instant,
    done: &CancellationToken,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(30);
    let producer_settings =
        tollgate_router::kafka::chain_producer_config(config, &format!("{}.{}", config.kafka.group_id, topics.tag));
    let producer: ThreadedProducer<LoggingContext> =
        producer_settings.create_with_context(LoggingContext::new("baseline chain producer"))?;
    producer.init_transactions(timeout)?;
    let mut settings = tollgate_router::kafka::consumer_config(config, group::Member::AuditChain);
    settings
        .set("group.id", format!("{}.{}-chain", config.kafka.group_id, topics.tag))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = settings.create()?;
    consumer.subscribe(&[&topics.intake])?;
    let mut member = Member::default();
    let mut written = 0u64;
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
                let (id, chained) = chained_copies.nth(written);
                let record = BaseRecord::to(&topics.audit).partition(m.partition()).key(id).payload(chained);
                written += 1;
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
    clock.observe();
    teardown.keep(consumer);
    teardown.keep(producer);
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
    let mut settings = tollgate_router::kafka::consumer_config(config, group::Member::ReviewJoin);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_of_a_share_are_numbered_in_turn() {
        for share in [0.005, 0.111, 0.807, 1.0] {
            let picked: Vec<u64> = (0..5_000).filter(|n| falls(*n, share)).map(|n| nth_of(n, share)).collect();
            let expected: Vec<u64> = (0..picked.len() as u64).collect();
            assert_eq!(picked, expected, "share {share}");
            assert_eq!(picked.len() as u64, (5_000.0 * share) as u64, "share {share}");
        }
    }
}
