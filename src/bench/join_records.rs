//! The review join's baseline, "same records": the Kafka work the join does per decision,
//! without Tollgate's work in between, fed the same decisions at the same rate.
//!
//! Per decision, the join reads the decision and writes a resolved record and the review's
//! changelog state, which it reads back. It hands an audit record to its process's chainer
//! (which holds every intake partition when one router runs), and the chainer writes it to the
//! audit topic in transactions. This baseline moves the records the join wrote in the join
//! phase, read back and taken in turn, with the same client settings, on three threads:
//!
//! 1. consume the decisions in batches of the join's size; per decision, produce a resolved
//!    record and a state keyed by its event id (the state with the join's writer header,
//!    [`state_headers`]), and hand its audit record's partition (its event id's, as the join
//!    places it) to stage 2;
//! 2. the chainer's transactional writes: each handed record becomes a chained record of the
//!    router's sample (`handed::Stage2::chain_handed`);
//! 3. read the state copies back (`records::read_copies`).
//!
//! Its lag is sampled like the join's ([`join::measure`]). A baseline that falls behind the
//! asked rate as well shows that the client library and the broker, not Tollgate, bound the
//! join on this machine.

use super::handed;
use super::join::{self, JoinPhase};
use super::records::{self, Topics};
use super::shape::{Kept, Samples, Shape};
use crate::synth::send_waiting;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_router::config::RouterConfig;
use tollgate_router::kafka::group::Member;
use tollgate_router::kafka::{state_headers, writer_id, STATE_SUFFIX};

/// How long the phase may take.
const LIMIT: Duration = Duration::from_secs(300);

/// The join's mean output per decision, read back from what it wrote in the join phase, and
/// those records, which the baseline writes in turn (see [`super::shape`] for why not filler).
#[derive(Debug, Clone, serde::Serialize)]
pub struct JoinShape {
    pub resolved_bytes: usize,
    pub state_bytes: usize,
    pub audit_bytes: usize,
    /// A chained audit record's size and key size.
    pub chained_bytes: usize,
    pub chained_key_bytes: usize,
    #[serde(skip)]
    resolved: Arc<Kept>,
    #[serde(skip)]
    state: Arc<Kept>,
    /// The router's sample: its audit records stand for the join's (see [`JoinShape::measure`]).
    #[serde(skip)]
    routing: Arc<Samples>,
}

impl JoinShape {
    /// Up to `sample` resolved records and changelog states the join wrote, and their mean
    /// sizes; the audit records are the router's (`routing`), of about the size of the join's.
    pub fn measure(config: &RouterConfig, routing: &Shape, sample: usize) -> anyhow::Result<JoinShape> {
        let t = &config.topics;
        let (resolved_bytes, resolved) = read_back(config, &t.resolved, sample, |_| true)?;
        let (state_bytes, state) = read_back(config, &t.pending_changelog, sample, |key| {
            key.is_some_and(|k| k.ends_with(STATE_SUFFIX.as_bytes()))
        })?;
        Ok(JoinShape {
            resolved_bytes,
            state_bytes,
            audit_bytes: routing.audit_bytes,
            chained_bytes: routing.chained_bytes,
            chained_key_bytes: routing.chained_key_bytes,
            resolved: Arc::new(resolved),
            state: Arc::new(state),
            routing: Arc::clone(&routing.samples),
        })
    }
}

/// Up to `sample` records of `topic` whose key passes `keep`, read from the beginning of every
/// partition, and their mean value size.
fn read_back(
    config: &RouterConfig,
    topic: &str,
    sample: usize,
    keep: impl Fn(Option<&[u8]>) -> bool,
) -> anyhow::Result<(usize, Kept)> {
    let mut settings = tollgate_router::kafka::consumer_config(config, Member::ReviewJoin);
    settings.set("group.id", format!("{}.join-shape", config.kafka.group_id)).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = settings.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (mut bytes, mut n, mut kept) = (0usize, 0usize, Kept::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    while n < sample && Instant::now() < deadline {
        // A quiet second: the topic has been read to its end.
        let Some(m) = consumer.poll(Duration::from_secs(1)) else { break };
        let m = m?;
        if keep(m.key()) {
            let value = m.payload().unwrap_or_default();
            bytes += value.len();
            n += 1;
            kept.keep(m.key().unwrap_or_default(), value);
        }
    }
    anyhow::ensure!(n > 0, "no record to measure in {topic}");
    Ok((bytes / n, kept))
}

/// Runs the baseline on `topics` (created by the caller; `routed` takes the resolved copies,
/// `changelog` the state copies), fed decisions for `ids` at `rate` on `decisions`.
pub async fn run(
    config: &RouterConfig,
    topics: Topics,
    decisions: String,
    shape: JoinShape,
    ids: Vec<String>,
    rate: u64,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinPhase> {
    let joined = Arc::new(AtomicU64::new(0));
    // Stage 2's intake consumer has joined its group, as the router's chainer has long before
    // its join phase: no decision is offered before.
    let assigned = Arc::new(AtomicBool::new(false));
    let done = shutdown.child_token();
    let total = ids.len() as u64;
    let stages = {
        let (config, joined, done) = (config.clone(), Arc::clone(&joined), done.clone());
        let assigned = Arc::clone(&assigned);
        let decisions = decisions.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let deadline = Instant::now() + LIMIT;
            let chained = AtomicU64::new(0);
            // Stages that have joined their groups (stage 1 here does not wait for them).
            let members = std::sync::atomic::AtomicUsize::new(0);
            // The join's phase is measured on its own clock (the decisions joined); the chain
            // stage's clients are closed at the end either way.
            let teardown = records::Teardown::default();
            let (handed, to_chain) = handed::hand_off_channel();
            std::thread::scope(|s| {
                let copy = s
                    .spawn(|| copy_decisions(&config, &topics, (&decisions, handed), &shape, &joined, deadline, &done));
                let chain = s.spawn(|| {
                    // Taken by value: a receiver cannot be shared between threads.
                    let to_chain = to_chain;
                    let stage_2 = handed::Stage2 {
                        config: &config,
                        topics: &topics,
                        events: total,
                        chained: &chained,
                        deadline,
                        done: &done,
                        clock: None,
                        joined: &members,
                        assigned: &assigned,
                        teardown: &teardown,
                    };
                    stage_2.chain_handed(&shape.routing.chained, &to_chain)
                });
                let read = s.spawn(|| records::read_copies(&config, &topics, &members, &done));
                let panicked = |stage: &str| anyhow::anyhow!("the {stage} stage panicked");
                let results = [
                    copy.join().map_err(|_| panicked("copy")),
                    chain.join().map_err(|_| panicked("chain")),
                    read.join().map_err(|_| panicked("read")),
                ];
                results.into_iter().try_for_each(|r| r.and_then(|inner| inner))
            })
        })
    };
    super::wait_until(|| assigned.load(Ordering::Acquire) || stages.is_finished(), LIMIT, shutdown).await;
    let counter = Arc::clone(&joined);
    let phase =
        join::measure(config, &decisions, ids, rate, move || counter.load(Ordering::Acquire), LIMIT, shutdown).await;
    done.cancel();
    stages.await??;
    phase
}

/// Stage 1: the join's records per decision, each audit record handed to stage 2.
fn copy_decisions(
    config: &RouterConfig,
    topics: &Topics,
    (decisions, handed): (&str, std::sync::mpsc::SyncSender<(i32, u64)>),
    shape: &JoinShape,
    joined: &AtomicU64,
    deadline: Instant,
    done: &CancellationToken,
) -> anyhow::Result<()> {
    let (consumer, producer) = records::copy_clients(config, topics, decisions, records::Start::Preloaded)?;
    let placement = records::IntakePlacement::read(config, &topics.intake, LIMIT)?;
    let writer = writer_id();
    let mut key = Vec::new();
    while Instant::now() < deadline && !done.is_cancelled() {
        let mut wait = Duration::from_millis(100);
        let mut polled = 0;
        while polled < config.processing.batch_size {
            let Some(m) = consumer.poll(wait) else { break };
            let m = m?;
            let id = m.key().unwrap_or_default();
            let n = joined.load(Ordering::Acquire);
            let resolved = shape.resolved.nth(n).1;
            send_waiting(&producer, BaseRecord::to(&topics.routed[0]).key(id).payload(resolved), done)?;
            key.clear();
            key.extend_from_slice(id);
            key.extend_from_slice(STATE_SUFFIX.as_bytes());
            send_waiting(
                &producer,
                BaseRecord::to(&topics.changelog)
                    .key(key.as_slice())
                    .payload(shape.state.nth(n).1)
                    .headers(state_headers(&writer)),
                done,
            )?;
            handed
                .send((placement.of(id), n))
                .map_err(|_| anyhow::anyhow!("the join baseline's stage 2 has stopped"))?;
            joined.fetch_add(1, Ordering::AcqRel);
            polled += 1;
            wait = Duration::ZERO;
        }
    }
    crate::synth::flush_delivered(&producer, Duration::from_secs(60), "the join's baseline")?;
    Ok(())
}
