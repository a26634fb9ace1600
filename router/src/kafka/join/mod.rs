//! The review join: consumes reviewers' decisions and the pending-review changelog, keeps the
//! [`ReviewState`], ticks SLA deadlines, and publishes what the state decides.
//!
//! # Partitioning
//! Decisions and changelog entries are keyed by event id and partitioned by Java's default
//! partitioner (murmur2; the router's producer uses librdkafka's `murmur2_random`), and both
//! topics have the same number of partitions. One consumer group with the range assignor
//! subscribes to both, so partition `p` of each goes to the same instance: the instance that
//! holds a review's state is the one that receives its decisions.
//!
//! # Changelog
//! The router writes one entry per event entering review (key: event id; it carries the
//! original event). This worker writes the later states under the key `<event id>/state` in
//! the same partition, so compaction keeps both the event and its latest state. On assignment
//! the changelog partitions are replayed from the beginning; revisions make the replay (and
//! the worker's own entries read back) idempotent.
//!
//! # Delivery
//! At least once, like the router: a consumed decision's offset is stored only after every
//! record it caused (resolution, audit, changelog) is acknowledged.

mod cache;
mod lookup;
mod publish;

use crate::kafka::inflight::Batch;
use crate::review::Resolution;
use cache::EventCache;
use lookup::EventLookup;
use tollgate_schemas::headers;

use super::context::{DeliveryContext, ReviewHandOver, RouterConsumerContext};
use super::group::{Member, Membership};
use super::handoff::HandOff;
use super::inflight::InFlight;
use super::intake::{IntakeBatches, TOPIC_WAIT};
use super::runner::{await_chainer, mark_unsealed, send_intake, unsealed_for, LoopError};
use super::{consumer_config, poll_batch, producer_config, BACKPRESSURE_WAIT};
use crate::config::{InputFormat, RouterConfig};
use crate::decode::AvroInput;
use crate::pipeline::{millis, UnsealedFor};
use crate::review::{Actor, Pending, PendingInput, ReviewSettings, ReviewState};
use crate::telemetry::Telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::Message;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tollgate_schemas::{ChangeState, PendingChange, RecordFormat, ReviewAction, ReviewDecision};

/// Key suffix of the worker's state entries in the changelog.
pub const STATE_SUFFIX: &str = "/state";
/// The longest a changelog replay may hold decisions and SLA ticks after an assignment.
const REPLAY_HOLD: Duration = Duration::from_secs(30);
/// A replay is over when no changelog record came for this long (a fallback for brokers whose
/// high watermarks cannot be trusted).
const REPLAY_QUIET: Duration = Duration::from_secs(1);

/// Runs the review join on the current thread until `shutdown` is cancelled. Its audit
/// batches go to this process's chainer through `hand_off` when it holds their intake
/// partition (the join is at least once under either guarantee), else to the intake.
pub fn run_join(
    config: &RouterConfig,
    telemetry: &Telemetry,
    state: Arc<ReviewState>,
    hand_off: Option<Arc<HandOff>>,
    shutdown: &CancellationToken,
) -> Result<(), LoopError> {
    let topics = &config.topics;
    let settings = producer_config(config);
    // Audit records go to the intake in batches, as the routing loop sends its own.
    let intake = IntakeBatches::placed_like(
        &settings,
        &consumer_config(config, Member::ReviewJoin),
        &topics.audit_intake,
        TOPIC_WAIT,
    )?;
    let unsealed_for = unsealed_for(config, hand_off.is_some(), &intake);
    let inflight = Arc::new(
        InFlight::new(thread::current(), vec![topics.review_decisions.clone(), topics.pending_changelog.clone()])
            .with_intake(intake),
    );
    let producer: ThreadedProducer<DeliveryContext> =
        settings.create_with_context(DeliveryContext::new(telemetry, &inflight))?;
    let mut consumer_settings = consumer_config(config, Member::ReviewJoin);
    // Set after the user's overrides: co-partitioning needs the range assignor.
    consumer_settings
        .set("group.id", format!("{}.review", config.kafka.group_id))
        .set("partition.assignment.strategy", "range");
    let consumer: BaseConsumer<RouterConsumerContext> =
        consumer_settings.create_with_context(RouterConsumerContext {
            telemetry: telemetry.clone(),
            inflight: Arc::clone(&inflight),
            producer: producer.clone(),
            input_topic: topics.review_decisions.clone(),
            audit_intake_topic: topics.audit_intake.clone(),
            hand_off: hand_off.clone(),
            drain_timeout: config.processing.shutdown_timeout.0,
            review: Some(ReviewHandOver {
                changelog_topic: topics.pending_changelog.clone(),
                state: Arc::clone(&state),
                assigned_at: Mutex::new(None),
            }),
            generation: Default::default(),
            membership: Membership::new(Member::ReviewJoin),
        })?;
    consumer.subscribe(&[&topics.review_decisions, &topics.pending_changelog])?;
    await_chainer(config, hand_off.as_deref(), Member::ReviewJoin, telemetry, shutdown);
    tracing::info!(decisions = %topics.review_decisions, changelog = %topics.pending_changelog, "Joining review decisions.");
    let settings = ReviewSettings::from_config(&config.review);
    for queue in [tollgate_schemas::Route::SyncReview, tollgate_schemas::Route::AsyncReview] {
        telemetry.review_sla(queue, settings.sla_ms(queue));
    }
    let mut join = Join {
        config,
        telemetry,
        state: &state,
        inflight: &inflight,
        producer: &producer,
        hand_off: hand_off.as_deref(),
        unsealed_for,
        lookup: EventLookup::new(config, telemetry)?,
        events: EventCache::new(
            usize::try_from(config.review.event_cache_mib).unwrap_or(usize::MAX).saturating_mul(1 << 20),
        ),
        avro_input: avro_input(config),
        settings,
        buf: Vec::new(),
        audit: Vec::new(),
        replay: None,
        resolutions: Vec::new(),
        writer: writer_id(),
        decisions: Arc::from(topics.review_decisions.as_str()),
        changelog: Arc::from(topics.pending_changelog.as_str()),
        state_key: String::new(),
        timestamp: String::new(),
    };
    let result = join.run(&consumer, shutdown);
    consumer.context().drain_and_commit(&consumer);
    consumer.unsubscribe();
    result
}

/// The input's Avro decoder, to show Avro events as JSON in JSON resolved records.
fn avro_input(config: &RouterConfig) -> Option<AvroInput> {
    let path = config.resolve(config.input.avro_schema.as_deref()?);
    let text = std::fs::read_to_string(path).ok()?;
    Some(AvroInput::json_form_only(text.parse().ok()?, config.input.format == InputFormat::AvroConfluent))
}

struct Join<'a> {
    config: &'a RouterConfig,
    telemetry: &'a Telemetry,
    state: &'a ReviewState,
    inflight: &'a InFlight,
    producer: &'a ThreadedProducer<DeliveryContext>,
    /// See [`run_join`].
    hand_off: Option<&'a HandOff>,
    /// Whose audit records are gathered unsealed, for this process's chainer.
    unsealed_for: Option<UnsealedFor>,
    lookup: EventLookup,
    /// Original events of pending reviews, as read from the changelog.
    events: EventCache,
    avro_input: Option<AvroInput>,
    settings: ReviewSettings,
    buf: Vec<u8>,
    audit: Vec<u8>,
    replay: Option<Replay>,
    /// Resolutions of the current batch, written together at its end.
    resolutions: Vec<(Box<Resolution>, Arc<Batch>, Option<Source>)>,
    /// This join's id on the changelog states it writes ([`headers::STATE_WRITER`]).
    writer: String,
    /// The names of the decisions topic and the changelog, for [`Source`].
    decisions: Arc<str>,
    changelog: Arc<str>,
    /// A changelog state's key, `<event id>/state`.
    state_key: String,
    /// An audit record's timestamp.
    timestamp: String,
}

/// An id for this run of the join, drawn at random (with the process id and the time, so two
/// joins never share one in practice). The bench's baseline draws one for its state copies.
pub fn writer_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("{:016x}", h.finish())
}

/// The headers of a state entry the join writes to the changelog: its writer, so the join
/// knows its own entries when it reads them back (the `tollgate bench` baseline writes the
/// same).
pub fn state_headers(writer: &str) -> rdkafka::message::OwnedHeaders {
    rdkafka::message::OwnedHeaders::new_with_capacity(1)
        .insert(rdkafka::message::Header { key: headers::STATE_WRITER, value: Some(writer) })
}

/// Whether `m` carries `writer` as its [`headers::STATE_WRITER`].
fn written_by(m: &BorrowedMessage<'_>, writer: &str) -> bool {
    super::header(m, headers::STATE_WRITER) == Some(Some(writer.as_bytes()))
}

/// A changelog replay after an assignment. Until it is over, decisions are held (a decision
/// must meet the latest state of its review, which may lie further on in the changelog) and
/// SLA deadlines are not checked.
struct Replay {
    started: Instant,
    last_change: Instant,
    /// Changelog partitions still short of the end offset they had at assignment.
    targets: Vec<(i32, i64)>,
    /// Decisions consumed meanwhile.
    held: Vec<HeldDecision>,
}

/// A decision record held during a replay: key, value, partition, offset.
type HeldDecision = (Option<Vec<u8>>, Option<Vec<u8>>, i32, i64);

impl Replay {
    fn is_over(&self) -> bool {
        self.targets.is_empty() || self.last_change.elapsed() >= REPLAY_QUIET || self.started.elapsed() >= REPLAY_HOLD
    }
}

/// Where the record that caused an effect came from (for audit and dead-letter headers).
#[derive(Clone)]
struct Source {
    /// One of the join's two input topics (a shared name: no copy per record).
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

fn actor_name(actor: &Actor) -> (&str, Option<&str>) {
    match actor {
        Actor::Reviewer { id, role } => (id, Some(role)),
        Actor::PolicyTimeout => ("policy", None),
    }
}

impl Join<'_> {
    fn run(
        &mut self,
        consumer: &BaseConsumer<RouterConsumerContext>,
        shutdown: &CancellationToken,
    ) -> Result<(), LoopError> {
        let (batch_size, max_in_flight) = (self.config.processing.batch_size, self.config.processing.max_in_flight);
        let tick_every = self.config.review.tick.0;
        let mut last_tick = Instant::now();
        let mut seen_assignment: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            let assigned_at = consumer.context().review.as_ref().and_then(|r| *r.assigned_at.lock().ok()?);
            if assigned_at != seen_assignment {
                seen_assignment = assigned_at;
                self.start_replay(consumer);
            }
            self.inflight.settle(consumer)?;
            if self.inflight.events() + batch_size > max_in_flight {
                thread::park_timeout(BACKPRESSURE_WAIT);
                continue;
            }
            mark_unsealed(self.hand_off, self.unsealed_for.as_mut());
            let now = millis(SystemTime::now());
            let changelog = self.config.topics.pending_changelog.clone();
            let telemetry = self.telemetry;
            poll_batch(consumer, batch_size, telemetry, |m| {
                if m.topic() == changelog {
                    if let Some(r) = self.replay.as_mut() {
                        r.last_change = Instant::now();
                        r.targets.retain(|(p, end)| !(*p == m.partition() && m.offset() + 1 >= *end));
                    }
                    return self.on_change(&m, now);
                }
                match self.replay.as_mut() {
                    Some(r) => {
                        r.held.push((
                            m.key().map(<[u8]>::to_vec),
                            m.payload().map(<[u8]>::to_vec),
                            m.partition(),
                            m.offset(),
                        ));
                        Ok(())
                    }
                    None => {
                        let topic = self.inflight.topic_index(m.topic());
                        self.on_decision(m.key(), m.payload(), m.partition(), m.offset(), now)?;
                        self.inflight.record_event(topic, m.partition(), m.offset());
                        Ok(())
                    }
                }
            })?;
            if self.replay.as_ref().is_some_and(Replay::is_over) {
                self.finish_replay(now)?;
            }
            if self.replay.is_none() && last_tick.elapsed() >= tick_every {
                last_tick = Instant::now();
                let batch = self.inflight.open_batch();
                let tick = self.state.tick(now);
                for effect in tick.effects {
                    self.publish(effect, &batch, None)?;
                }
                for (queue, stats) in tick.queues {
                    self.telemetry.review_queue(queue, stats);
                }
                self.telemetry.review_event_cache(self.events.bytes());
            }
            self.flush_resolutions()?;
            self.inflight
                .seal_with(|r| send_intake(self.producer, &self.config.topics.audit_intake, self.hand_off, r))?;
        }
        self.flush_resolutions()
    }

    /// A changelog record: an event entering review (written by the router), or a state
    /// written by this worker (read back, or replayed after an assignment).
    fn on_change(&mut self, m: &BorrowedMessage<'_>, now: i64) -> Result<(), LoopError> {
        let batch = self.inflight.open_batch();
        let topic = self.inflight.topic_index(m.topic());
        let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
        if self.replay.is_none() && key.is_some_and(|k| k.ends_with(STATE_SUFFIX)) && written_by(m, &self.writer) {
            // A state this join wrote, read back: the review state holds it already (it was
            // written from there). Replays, which rebuild the state, read every record.
            self.inflight.record_event(topic, m.partition(), m.offset());
            return Ok(());
        }
        let change = m.payload().map(PendingChange::read);
        match (key, change) {
            // A tombstone: the review was forgotten.
            (_, None) => {}
            (Some(key), Some(Ok(mut change))) => {
                let effects = match key.strip_suffix(STATE_SUFFIX) {
                    Some(id) if change.state == ChangeState::Resolved => {
                        self.events.take(id);
                        self.state.restore_resolved(
                            id,
                            change.applied.iter().map(|f| Arc::from(f.as_ref())).collect(),
                            change.resolved_at.unwrap_or(now),
                            m.partition(),
                        )
                    }
                    Some(id) => {
                        self.state.restore(id, pending_from(&change, m.partition()));
                        Vec::new()
                    }
                    None => {
                        let (admitted, effects) = self.state.admit_keyed(
                            PendingInput {
                                event_id: key,
                                queue: change.queue,
                                risk: change.risk_score,
                                confidence: change.confidence,
                                routed_at: change.routed_at,
                                partition: m.partition(),
                                event_offset: m.offset(),
                                post_verify: change.post_verify,
                                policy_version: &change.policy_version,
                                model_version: &change.model_version,
                                rule: &change.rule,
                            },
                            now,
                        );
                        // An event entering review: keep its bytes for when the review ends,
                        // keyed by the review state's own copy of its id. The resolution looks
                        // the event up right after the state has read that id, so the key's
                        // bytes are still in the cache.
                        if let (Some(id), false) = (admitted, change.event.0.is_empty()) {
                            let event = std::mem::take(change.event.0.to_mut());
                            self.events.insert(id, m.partition(), change.event_format, event);
                        }
                        effects
                    }
                };
                let source =
                    Source { topic: Arc::clone(&self.changelog), partition: m.partition(), offset: m.offset() };
                for effect in effects {
                    self.publish(effect, &batch, Some(&source))?;
                }
            }
            (key, Some(Err(e))) => {
                self.telemetry.kafka_error(&format_args!("unreadable changelog entry {key:?}: {e}"));
            }
            (None, Some(Ok(_))) => self.telemetry.kafka_error(&"changelog entry without a key"),
        }
        self.inflight.record_event(topic, m.partition(), m.offset());
        Ok(())
    }

    /// A reviewer's decision (consumed now, or held during a replay).
    fn on_decision(
        &mut self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        partition: i32,
        offset: i64,
        now: i64,
    ) -> Result<(), LoopError> {
        let batch = self.inflight.open_batch();
        let source = Source { topic: Arc::clone(&self.decisions), partition, offset };
        match parse_decision(payload) {
            Ok(decision) => {
                self.telemetry.review_decision(decision.action);
                for effect in self.state.decide(decision, partition, now) {
                    self.publish(effect, &batch, Some(&source))?;
                }
            }
            Err(message) => {
                self.telemetry.review_unjoined("malformed_decision", "");
                self.dead_letter(&batch, key, payload, "malformed_decision", &message, Some(&source))?;
            }
        }
        Ok(())
    }

    /// Notes where each assigned changelog partition ends, to know when its replay is over.
    /// The ends are asked through the producer: on the consumer's connection to a partition's
    /// leader each question would wait behind its fetch, which a broker holds for
    /// `fetch.wait.max.ms` when the decisions and the changelog are quiet (see the audit
    /// chainer's `Chainer::head`). A partition whose end cannot be had is replayed until the
    /// changelog goes quiet (or the hold runs out), not taken as replayed.
    fn start_replay(&mut self, consumer: &BaseConsumer<RouterConsumerContext>) {
        let changelog = &self.config.topics.pending_changelog;
        let assigned = consumer.assignment().unwrap_or_default();
        let held: Vec<i32> = assigned.elements_for_topic(changelog).iter().map(|e| e.partition()).collect();
        self.events.retain_partitions(&held);
        let targets = assigned
            .elements_for_topic(changelog)
            .iter()
            .filter_map(|e| {
                let partition = e.partition();
                let end = match self.producer.client().fetch_watermarks(changelog, partition, Duration::from_secs(2)) {
                    Ok((_, high)) => high,
                    Err(error) => {
                        self.telemetry.kafka_error(&format_args!(
                            "review join: the end of changelog partition {partition} is unknown ({error}); \
                             replaying it until the changelog is quiet"
                        ));
                        i64::MAX
                    }
                };
                (end > 0).then_some((partition, end))
            })
            .collect();
        let held = self.replay.take().map(|r| r.held).unwrap_or_default();
        self.replay = Some(Replay { started: Instant::now(), last_change: Instant::now(), targets, held });
    }

    /// Applies the decisions held during the replay, in the order they came.
    fn finish_replay(&mut self, now: i64) -> Result<(), LoopError> {
        let Some(replay) = self.replay.take() else { return Ok(()) };
        tracing::info!(held = replay.held.len(), took = ?replay.started.elapsed(), "Changelog replayed; applying held decisions.");
        let topic = self.inflight.topic_index(&self.config.topics.review_decisions);
        for (key, payload, partition, offset) in replay.held {
            self.on_decision(key.as_deref(), payload.as_deref(), partition, offset, now)?;
            self.inflight.record_event(topic, partition, offset);
        }
        Ok(())
    }
}

/// The pending state carried by a worker's changelog entry.
fn pending_from(change: &PendingChange<'_>, partition: i32) -> Pending {
    Pending {
        queue: change.queue,
        revision: u32::try_from(change.revision).unwrap_or(0),
        tier: u8::try_from(change.tier).unwrap_or(u8::MAX),
        held: change.held,
        info_requested: change.info_requested,
        post_verify: change.post_verify,
        partition,
        // Unknown here: the restore keeps the offset of the router's entry.
        event_offset: -1,
        risk: change.risk_score as f32,
        confidence: change.confidence as f32,
        routed_at: change.routed_at,
        deadline: change.deadline,
        provenance: Arc::new(crate::review::Provenance {
            policy_version: change.policy_version.as_ref().into(),
            model_version: change.model_version.as_ref().into(),
            rule: change.rule.as_ref().into(),
        }),
        applied: change.applied.iter().map(|f| Arc::from(f.as_ref())).collect(),
    }
}

/// Decodes a decision: JSON when it looks like JSON, else an Avro datum of the decision schema.
fn parse_decision(payload: Option<&[u8]>) -> Result<ReviewDecision<'_>, String> {
    let bytes = payload.filter(|p| !p.is_empty()).ok_or("the decision has no value")?;
    let decision = ReviewDecision::read_borrowed(RecordFormat::of(bytes), bytes)
        .map_err(|e| format!("not a review decision: {e}"))?;
    if decision.event_id.is_empty() || decision.reviewer_id.is_empty() {
        return Err("a decision needs an event id and a reviewer id".into());
    }
    if matches!(decision.action, ReviewAction::Approve | ReviewAction::Reject) && decision.decided_at <= 0 {
        return Err("a final decision needs decided_at".into());
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_parse_from_json_and_avro_and_bad_ones_say_why() {
        let json = br#"{"event_id":"e","reviewer_id":"r","reviewer_role":"x","action":"approve","decided_at":5,"decision_id":null}"#;
        assert_eq!(parse_decision(Some(json)).unwrap().action, ReviewAction::Approve);
        let d = parse_decision(Some(json)).unwrap();
        let mut avro = Vec::new();
        d.write(RecordFormat::Avro, &mut avro).unwrap();
        assert_eq!(parse_decision(Some(&avro)).unwrap(), d);
        assert!(parse_decision(None).unwrap_err().contains("no value"));
        assert!(parse_decision(Some(b"{\"event_id\":\"e\"}")).unwrap_err().contains("not a review decision"));
        let no_reviewer = br#"{"event_id":"e","reviewer_id":"","reviewer_role":"x","action":"approve","decided_at":5,"decision_id":null}"#;
        assert!(parse_decision(Some(no_reviewer)).unwrap_err().contains("reviewer id"));
    }
}
