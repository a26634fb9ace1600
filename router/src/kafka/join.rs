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

use super::context::{DeliveryContext, ReviewHandOver, RouterConsumerContext};
use super::inflight::{Batch, InFlight};
use super::runner::{send, LoopError};
use super::{consumer_config, poll_batch, producer_config, BACKPRESSURE_WAIT};
use crate::config::{InputFormat, RouterConfig};
use crate::pipeline::millis;
use crate::review::{Actor, Effect, Escalation, Pending, PendingInput, Resolution, ReviewSettings, ReviewState};
use crate::telemetry::Telemetry;
use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tollgate_schemas::routed::AvroBytes;
use tollgate_schemas::{
    headers, AuditAction, AuditRecord, ChangeState, EscalationRecord, EventFormat, PendingChange, RecordFormat,
    ResolvedEvent, ReviewAction, ReviewDecision, ReviewOutcome,
};

/// Key suffix of the worker's state entries in the changelog.
pub const STATE_SUFFIX: &str = "/state";
/// The longest a changelog replay may hold decisions and SLA ticks after an assignment.
const REPLAY_HOLD: Duration = Duration::from_secs(30);
/// A replay is over when no changelog record came for this long (a fallback for brokers whose
/// high watermarks cannot be trusted).
const REPLAY_QUIET: Duration = Duration::from_secs(1);

/// Runs the review join on the current thread until `shutdown` is cancelled.
pub fn run_join(
    config: &RouterConfig,
    telemetry: &Telemetry,
    state: Arc<ReviewState>,
    shutdown: &CancellationToken,
) -> Result<(), LoopError> {
    let topics = &config.topics;
    let inflight = Arc::new(InFlight::new(
        thread::current(),
        vec![topics.review_decisions.clone(), topics.pending_changelog.clone()],
    ));
    let producer: ThreadedProducer<DeliveryContext> = producer_config(config)
        .create_with_context(DeliveryContext { telemetry: telemetry.clone(), inflight: Arc::clone(&inflight) })?;
    let mut consumer_settings = consumer_config(config);
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
            drain_timeout: config.processing.shutdown_timeout.0,
            review: Some(ReviewHandOver {
                changelog_topic: topics.pending_changelog.clone(),
                state: Arc::clone(&state),
                assigned_at: Mutex::new(None),
            }),
            generation: Default::default(),
        })?;
    consumer.subscribe(&[&topics.review_decisions, &topics.pending_changelog])?;
    tracing::info!(decisions = %topics.review_decisions, changelog = %topics.pending_changelog, "Joining review decisions.");
    let mut join = Join {
        config,
        telemetry,
        state: &state,
        inflight: &inflight,
        producer: &producer,
        lookup: EventLookup::new(config)?,
        avro_input: avro_input_schema(config),
        settings: ReviewSettings::from_config(&config.review),
        buf: Vec::new(),
        audit: Vec::new(),
        replay: None,
    };
    let result = join.run(&consumer, shutdown);
    consumer.context().drain_and_commit(&consumer);
    consumer.unsubscribe();
    result
}

/// The input's Avro schema, to show Avro events as JSON in JSON resolved records.
fn avro_input_schema(config: &RouterConfig) -> Option<(Schema, bool)> {
    let path = config.resolve(config.input.avro_schema.as_deref()?);
    let text = std::fs::read_to_string(path).ok()?;
    Some((Schema::parse_str(&text).ok()?, config.input.format == InputFormat::AvroConfluent))
}

/// Reads the changelog record that carries an event's original bytes.
struct EventLookup {
    consumer: BaseConsumer,
    topic: String,
}

impl EventLookup {
    fn new(config: &RouterConfig) -> Result<Self, LoopError> {
        let mut settings: ClientConfig = consumer_config(config);
        settings.set("group.id", format!("{}.lookup", config.kafka.group_id)).set("enable.auto.commit", "false");
        Ok(EventLookup { consumer: settings.create()?, topic: config.topics.pending_changelog.clone() })
    }

    fn fetch(&self, partition: i32, offset: i64) -> Option<PendingChange<'static>> {
        if offset < 0 {
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset)).ok()?;
        self.consumer.assign(&tpl).ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.offset() == offset => return PendingChange::read(m.payload()?).ok(),
                // Compacted away (the review was forgotten meanwhile).
                Some(Ok(m)) if m.offset() > offset => return None,
                _ => {}
            }
        }
        None
    }
}

struct Join<'a> {
    config: &'a RouterConfig,
    telemetry: &'a Telemetry,
    state: &'a ReviewState,
    inflight: &'a InFlight,
    producer: &'a ThreadedProducer<DeliveryContext>,
    lookup: EventLookup,
    avro_input: Option<(Schema, bool)>,
    settings: ReviewSettings,
    buf: Vec<u8>,
    audit: Vec<u8>,
    replay: Option<Replay>,
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
struct Source {
    topic: String,
    partition: i32,
    offset: i64,
}

impl Source {
    fn of(m: &BorrowedMessage<'_>) -> Self {
        Source { topic: m.topic().to_owned(), partition: m.partition(), offset: m.offset() }
    }
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
                for effect in self.state.tick(now) {
                    self.publish(effect, &batch, None)?;
                }
                for queue in [tollgate_schemas::Route::SyncReview, tollgate_schemas::Route::AsyncReview] {
                    let (n, oldest) = self.state.queue_stats(queue, now);
                    self.telemetry.review_queue(queue, n, oldest);
                }
            }
            self.inflight.seal();
        }
        Ok(())
    }

    /// A changelog record: an event entering review (written by the router), or a state
    /// written by this worker (read back, or replayed after an assignment).
    fn on_change(&mut self, m: &BorrowedMessage<'_>, now: i64) -> Result<(), LoopError> {
        let batch = self.inflight.open_batch();
        let topic = self.inflight.topic_index(m.topic());
        let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
        let change = m.payload().map(PendingChange::read);
        match (key, change) {
            // A tombstone: the review was forgotten.
            (_, None) => {}
            (Some(key), Some(Ok(change))) => {
                let effects = match key.strip_suffix(STATE_SUFFIX) {
                    Some(id) if change.state == ChangeState::Resolved => self.state.restore_resolved(
                        id,
                        change.applied.iter().map(|f| Arc::from(f.as_ref())).collect(),
                        change.resolved_at.unwrap_or(now),
                        m.partition(),
                    ),
                    Some(id) => {
                        self.state.restore(id, pending_from(&change, m.partition()));
                        Vec::new()
                    }
                    None => self.state.admit(
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
                    ),
                };
                let source = Source::of(m);
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
        let source = Source { topic: self.config.topics.review_decisions.clone(), partition, offset };
        match parse_decision(payload) {
            Ok(decision) => {
                self.telemetry.review_decision(decision.action.as_str());
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
    fn start_replay(&mut self, consumer: &BaseConsumer<RouterConsumerContext>) {
        let changelog = &self.config.topics.pending_changelog;
        let assigned = consumer.assignment().unwrap_or_default();
        let targets = assigned
            .elements_for_topic(changelog)
            .iter()
            .filter_map(|e| {
                let (_, high) = consumer.fetch_watermarks(changelog, e.partition(), Duration::from_secs(2)).ok()?;
                (high > 0).then_some((e.partition(), high))
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

    fn publish(&mut self, effect: Effect, batch: &Arc<Batch>, source: Option<&Source>) -> Result<(), LoopError> {
        match effect {
            Effect::Resolved(r) => self.resolved(&r, batch, source),
            Effect::Escalated(e) => self.escalated(&e, batch, source),
            Effect::InfoRequested { event_id, actor, rationale, at, pending } => {
                self.write_audit(
                    batch,
                    &event_id,
                    &actor,
                    AuditAction::ReviewRequestInfo,
                    "info_requested",
                    &pending,
                    Some(&rationale),
                    None,
                    source,
                    at,
                )?;
                self.write_state(batch, &event_id, &pending, ChangeState::Pending, &[], None)
            }
            Effect::Held { event_id, queue, age_ms, at, pending } => {
                self.telemetry.review_escalated(queue, "held");
                let tier = i32::from(pending.tier);
                let record = EscalationRecord {
                    event_id: Cow::Borrowed(&event_id),
                    queue,
                    from_tier: tier,
                    to_tier: tier,
                    age_ms,
                    actor: Cow::Borrowed("policy_timeout"),
                    held: true,
                    at,
                };
                self.send_record(batch, &self.config.topics.escalations.clone(), &event_id, |b, f| record.write(f, b))?;
                self.write_audit(
                    batch,
                    &event_id,
                    &Actor::PolicyTimeout,
                    AuditAction::TimeoutFallback,
                    "hold",
                    &pending,
                    Some("every tier ran out; fallback hold"),
                    Some(age_ms),
                    source,
                    at,
                )?;
                self.write_state(batch, &event_id, &pending, ChangeState::Pending, &[], None)
            }
            Effect::Unjoined { decision, reason } => {
                self.telemetry.review_unjoined(reason.as_str(), &decision.event_id);
                let mut bytes = Vec::new();
                let _ = decision.write(RecordFormat::Json, &mut bytes);
                let message =
                    format!("decision for event {} could not be joined: {}", decision.event_id, reason.as_str());
                self.dead_letter(
                    batch,
                    Some(decision.event_id.as_bytes()),
                    Some(&bytes),
                    reason.as_str(),
                    &message,
                    source,
                )?;
                let mut audit = Vec::new();
                let record = AuditRecord {
                    event_id: Cow::Borrowed(&decision.event_id),
                    timestamp: Cow::Owned(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
                    actor: Cow::Borrowed(&decision.reviewer_id),
                    actor_role: Some(Cow::Borrowed(&decision.reviewer_role)),
                    action: Cow::Borrowed(AuditAction::DecisionUnjoined.as_str()),
                    decision: Cow::Borrowed(reason.as_str()),
                    rule: None,
                    guardrail: false,
                    policy_version: None,
                    model_version: None,
                    risk_score: None,
                    confidence: None,
                    explanation: Vec::new(),
                    input_snapshot: Cow::Borrowed("{}"),
                    rationale: Some(Cow::Borrowed(&decision.rationale)),
                    sla_expected_ms: None,
                    sla_actual_ms: None,
                    source_topic: Cow::Borrowed(&self.config.topics.review_decisions),
                    source_partition: source.map_or(-1, |m| m.partition),
                    source_offset: source.map_or(-1, |m| m.offset),
                };
                let _ = record.write(self.config.output.format, &mut audit);
                let audit_topic = self.config.topics.audit.clone();
                send(
                    self.producer,
                    BaseRecord::with_opaque_to(&audit_topic, Arc::clone(batch))
                        .key(decision.event_id.as_bytes())
                        .payload(&audit),
                )
            }
            Effect::Duplicate { .. } => {
                self.telemetry.review_duplicate();
                Ok(())
            }
            Effect::Forget { event_id, partition } => {
                let topic = self.config.topics.pending_changelog.clone();
                for key in [event_id.to_string(), format!("{event_id}{STATE_SUFFIX}")] {
                    let record: BaseRecord<'_, [u8], [u8], _> =
                        BaseRecord::with_opaque_to(&topic, Arc::clone(batch)).key(key.as_bytes()).partition(partition);
                    send(self.producer, record)?;
                }
                Ok(())
            }
        }
    }

    fn resolved(&mut self, r: &Resolution, batch: &Arc<Batch>, source: Option<&Source>) -> Result<(), LoopError> {
        let original = self.lookup.fetch(r.pending.partition, r.pending.event_offset);
        if original.is_none() {
            tracing::warn!(event_id = %r.event_id, "The original event is not in the changelog; the resolved record carries none.");
        }
        let (format, bytes) =
            original.as_ref().map_or((EventFormat::Json, &[][..]), |c| (c.event_format, c.event.0.as_ref()));
        let (actor, role) = actor_name(&r.actor);
        let outcome = |o: crate::review::Outcome| match o {
            crate::review::Outcome::Approved => ReviewOutcome::Approved,
            crate::review::Outcome::Rejected => ReviewOutcome::Rejected,
        };
        let record = ResolvedEvent {
            event_id: Cow::Borrowed(&r.event_id),
            queue: r.queue,
            rule: Cow::Borrowed(&r.pending.rule),
            recommendation: outcome(r.recommendation),
            action: r.action,
            outcome: outcome(r.outcome),
            actor: Cow::Borrowed(if r.action.is_some() { actor } else { "policy_timeout" }),
            actor_role: role.map(Cow::Borrowed),
            rationale: Cow::Borrowed(&r.rationale),
            second_signoff: r.second_signoff.as_deref().map(Cow::Borrowed),
            overridden: r.overridden,
            review_latency_ms: r.latency_ms,
            sla_met: r.sla_met,
            tier: i32::from(r.tier),
            decided_at: r.decided_at,
            rollback: r.rollback,
            risk_score: f64::from(r.pending.risk),
            confidence: f64::from(r.pending.confidence),
            policy_version: Cow::Borrowed(&r.pending.policy_version),
            model_version: Cow::Borrowed(&r.pending.model_version),
            event_format: format,
            event: (),
        };
        self.buf.clear();
        let written = match self.config.output.format {
            RecordFormat::Avro => record.with_event(AvroBytes(Cow::Borrowed(bytes))).write_avro(&mut self.buf),
            RecordFormat::Json => {
                let event = self.event_as_json(format, bytes);
                record.with_event(event).write_json(&mut self.buf)
            }
        };
        if let Err(e) = written {
            tracing::error!(error = %e, event_id = %r.event_id, "Encoding a resolved record failed.");
        }
        let mut targets = vec![self.config.topics.resolved.clone()];
        if r.rollback {
            targets.push(self.config.topics.rollbacks.clone());
        }
        for topic in &targets {
            let record =
                BaseRecord::with_opaque_to(topic, Arc::clone(batch)).key(r.event_id.as_bytes()).payload(&self.buf);
            send(self.producer, record)?;
        }
        let timeout = r.action.is_none();
        self.telemetry.review_resolved(r.queue, r.outcome.as_str(), r.overridden, timeout, r.latency_ms, r.sla_met);
        let action = if timeout { AuditAction::TimeoutFallback } else { AuditAction::ReviewDecision };
        self.write_audit(
            batch,
            &r.event_id,
            &r.actor,
            action,
            r.outcome.as_str(),
            &r.pending,
            Some(&r.rationale),
            Some(r.latency_ms),
            source,
            r.decided_at,
        )?;
        self.write_state(batch, &r.event_id, &r.pending, ChangeState::Resolved, &r.fingerprints, Some(r.decided_at))
    }

    fn escalated(&mut self, e: &Escalation, batch: &Arc<Batch>, source: Option<&Source>) -> Result<(), LoopError> {
        self.telemetry.review_escalated(e.queue, &e.to_tier.to_string());
        let (actor, _) = actor_name(&e.actor);
        let record = EscalationRecord {
            event_id: Cow::Borrowed(&e.event_id),
            queue: e.queue,
            from_tier: i32::from(e.from_tier),
            to_tier: i32::from(e.to_tier),
            age_ms: e.age_ms,
            actor: Cow::Borrowed(if e.actor == Actor::PolicyTimeout { "policy_timeout" } else { actor }),
            held: false,
            at: e.at,
        };
        let topic = self.config.topics.escalations.clone();
        self.send_record(batch, &topic, &e.event_id, |b, f| record.write(f, b))?;
        let action =
            if e.actor == Actor::PolicyTimeout { AuditAction::TierTimeout } else { AuditAction::ReviewEscalate };
        let decision = format!("tier {} -> {}", e.from_tier, e.to_tier);
        self.write_audit(
            batch,
            &e.event_id,
            &e.actor,
            action,
            &decision,
            &e.pending,
            None,
            Some(e.age_ms),
            source,
            e.at,
        )?;
        self.write_state(batch, &e.event_id, &e.pending, ChangeState::Pending, &[], None)
    }

    /// Encodes a record in the output format and sends it keyed by event id.
    fn send_record(
        &mut self,
        batch: &Arc<Batch>,
        topic: &str,
        event_id: &str,
        encode: impl FnOnce(&mut Vec<u8>, RecordFormat) -> Result<(), tollgate_schemas::CodecError>,
    ) -> Result<(), LoopError> {
        self.buf.clear();
        if let Err(e) = encode(&mut self.buf, self.config.output.format) {
            tracing::error!(error = %e, topic, event_id, "Encoding a review record failed.");
        }
        send(
            self.producer,
            BaseRecord::with_opaque_to(topic, Arc::clone(batch)).key(event_id.as_bytes()).payload(&self.buf),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn write_audit(
        &mut self,
        batch: &Arc<Batch>,
        event_id: &str,
        actor: &Actor,
        action: AuditAction,
        decision: &str,
        pending: &Pending,
        rationale: Option<&str>,
        actual_ms: Option<i64>,
        source: Option<&Source>,
        at: i64,
    ) -> Result<(), LoopError> {
        let (actor, role) = actor_name(actor);
        let sla = self.settings_sla(pending);
        let record = AuditRecord {
            event_id: Cow::Borrowed(event_id),
            timestamp: Cow::Owned(
                humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(at.max(0) as u64))
                    .to_string(),
            ),
            actor: Cow::Borrowed(actor),
            actor_role: role.map(Cow::Borrowed),
            action: Cow::Borrowed(action.as_str()),
            decision: Cow::Borrowed(decision),
            rule: Some(Cow::Borrowed(&pending.rule)),
            guardrail: false,
            policy_version: Some(Cow::Borrowed(&pending.policy_version)),
            model_version: Some(Cow::Borrowed(&pending.model_version)),
            risk_score: Some(f64::from(pending.risk)),
            confidence: Some(f64::from(pending.confidence)),
            explanation: Vec::new(),
            // The event's redacted snapshot is on its routing audit record.
            input_snapshot: Cow::Borrowed("{}"),
            rationale: rationale.map(Cow::Borrowed),
            sla_expected_ms: Some(sla),
            sla_actual_ms: actual_ms,
            source_topic: Cow::Borrowed(source.map_or(self.config.topics.pending_changelog.as_str(), |m| &m.topic)),
            source_partition: source.map_or(pending.partition, |m| m.partition),
            source_offset: source.map_or(-1, |m| m.offset),
        };
        self.audit.clear();
        if let Err(e) = record.write(self.config.output.format, &mut self.audit) {
            tracing::error!(error = %e, event_id, "Encoding a review audit record failed.");
        }
        let topic = self.config.topics.audit.clone();
        send(
            self.producer,
            BaseRecord::with_opaque_to(&topic, Arc::clone(batch)).key(event_id.as_bytes()).payload(&self.audit),
        )
    }

    fn settings_sla(&self, pending: &Pending) -> i64 {
        let q = if pending.queue == tollgate_schemas::Route::SyncReview {
            &self.settings.sync_review
        } else {
            &self.settings.async_review
        };
        q.tiers_ms.first().copied().unwrap_or(0)
    }

    /// Writes the review's state to the changelog under `<event id>/state`, in its partition.
    fn write_state(
        &mut self,
        batch: &Arc<Batch>,
        event_id: &str,
        pending: &Pending,
        state: ChangeState,
        fingerprints: &[Arc<str>],
        resolved_at: Option<i64>,
    ) -> Result<(), LoopError> {
        let applied: Vec<Cow<'_, str>> = match state {
            ChangeState::Resolved => fingerprints.iter().map(|f| Cow::Borrowed(&**f)).collect(),
            ChangeState::Pending => pending.applied.iter().map(|f| Cow::Borrowed(&**f)).collect(),
        };
        let revision = pending.revision + u32::from(state == ChangeState::Resolved);
        let change = PendingChange {
            event_id: Cow::Borrowed(event_id),
            state,
            queue: pending.queue,
            revision: i32::try_from(revision).unwrap_or(i32::MAX),
            tier: i32::from(pending.tier),
            held: pending.held,
            info_requested: pending.info_requested,
            post_verify: pending.post_verify,
            risk_score: f64::from(pending.risk),
            confidence: f64::from(pending.confidence),
            routed_at: pending.routed_at,
            deadline: pending.deadline,
            policy_version: Cow::Borrowed(&pending.policy_version),
            model_version: Cow::Borrowed(&pending.model_version),
            rule: Cow::Borrowed(&pending.rule),
            applied,
            resolved_at,
            event_format: EventFormat::Json,
            event: AvroBytes(Cow::Borrowed(&[])),
        };
        self.buf.clear();
        if let Err(e) = change.write(&mut self.buf) {
            tracing::error!(error = %e, event_id, "Encoding a changelog entry failed.");
        }
        let key = format!("{event_id}{STATE_SUFFIX}");
        let topic = self.config.topics.pending_changelog.clone();
        let record = BaseRecord::with_opaque_to(&topic, Arc::clone(batch))
            .key(key.as_bytes())
            .payload(&self.buf)
            .partition(pending.partition);
        send(self.producer, record)
    }

    fn dead_letter(
        &mut self,
        batch: &Arc<Batch>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        reason: &str,
        message: &str,
        source: Option<&Source>,
    ) -> Result<(), LoopError> {
        let (topic, partition, offset) =
            source.map_or((String::new(), -1, -1), |m| (m.topic.clone(), m.partition, m.offset));
        let h = OwnedHeaders::new_with_capacity(5)
            .insert(Header { key: headers::ERROR_REASON, value: Some(reason) })
            .insert(Header { key: headers::ERROR_MESSAGE, value: Some(message) })
            .insert(Header { key: headers::SOURCE_TOPIC, value: Some(&topic) })
            .insert(Header { key: headers::SOURCE_PARTITION, value: Some(&partition.to_string()) })
            .insert(Header { key: headers::SOURCE_OFFSET, value: Some(&offset.to_string()) });
        let dl_topic = self.config.topics.dead_letter.clone();
        let mut record: BaseRecord<'_, [u8], [u8], Arc<Batch>> =
            BaseRecord::with_opaque_to(&dl_topic, Arc::clone(batch)).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        send(self.producer, record)
    }

    fn event_as_json(&self, format: EventFormat, bytes: &[u8]) -> serde_json::Value {
        match format {
            EventFormat::Json => serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null),
            EventFormat::Avro => {
                let Some((schema, confluent)) = &self.avro_input else { return serde_json::Value::Null };
                let mut datum = if *confluent && bytes.len() >= 5 { &bytes[5..] } else { bytes };
                apache_avro::from_avro_datum(schema, &mut datum, None)
                    .ok()
                    .and_then(|v| serde_json::Value::try_from(v).ok())
                    .unwrap_or(serde_json::Value::Null)
            }
        }
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
        policy_version: Arc::from(change.policy_version.as_ref()),
        model_version: Arc::from(change.model_version.as_ref()),
        rule: Arc::from(change.rule.as_ref()),
        applied: change.applied.iter().map(|f| Arc::from(f.as_ref())).collect(),
    }
}

/// Decodes a decision: JSON when it looks like JSON, else an Avro datum of the decision schema.
fn parse_decision(payload: Option<&[u8]>) -> Result<ReviewDecision<'static>, String> {
    let bytes = payload.filter(|p| !p.is_empty()).ok_or("the decision has no value")?;
    let format = if bytes.first() == Some(&b'{') { RecordFormat::Json } else { RecordFormat::Avro };
    let decision = ReviewDecision::read(format, bytes).map_err(|e| format!("not a review decision: {e}"))?;
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
