//! The consume → process → produce loop. It runs on a dedicated thread: the hot path is
//! synchronous (librdkafka's `BaseConsumer` poll, the pure pipeline, a non-blocking enqueue on
//! the producer) and needs no async runtime.

use super::context::{DeliveryContext, RouterConsumerContext};
use super::group::{Member, Membership};
use super::handoff::{HandOff, NotHanded};
use super::inflight::{Batch, DeliveryFailed, InFlight, IntakeRecord};
use super::intake::{batch_headers, IntakeBatches, TOPIC_WAIT};
use super::{consumer_config, poll_batch, routing_producer_config, BACKPRESSURE_WAIT};
use crate::config::{Guarantee, RouterConfig};
use crate::drift::{DriftTally, DriftWindow};
use crate::pipeline::{Output, Pipeline, Source, UnsealedFor, Verdict};
use crate::reject::Rejection;
use crate::reload::PipelineSlot;
use crate::telemetry::{RoutedTally, Telemetry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::{txn_fatal, wait_delivered, Undelivered};
use tollgate_schemas::intake::AuditBatch;
use tollgate_schemas::{headers, RecordFormat, Route};

/// How long a routing loop waits for acknowledgements, none coming, before it is not ready.
const STALLED: Duration = Duration::from_secs(10);

/// Longest wait for a transaction call (init, offsets, commit, abort).
pub(super) const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a timed-out transaction call is made again before its error stops the router.
const RESUME_FOR: Duration = Duration::from_secs(90);

/// How a routing transaction failed.
pub(super) enum TxnError {
    /// Abort it and retry the batch.
    Abort(String),
    /// Stop the router.
    Fatal(LoopError),
}

impl From<KafkaError> for TxnError {
    fn from(e: KafkaError) -> Self {
        match &e {
            KafkaError::Transaction(t) if t.txn_requires_abort() => TxnError::Abort(e.to_string()),
            // commit_transaction flushes first; a timeout there leaves the transaction to abort.
            KafkaError::Flush(_) => TxnError::Abort(e.to_string()),
            _ => TxnError::Fatal(e.into()),
        }
    }
}

/// Makes a transaction call (`what`: initialising transactions, a commit, sending offsets)
/// and makes it again while it times out, for up to [`RESUME_FOR`] in all. librdkafka leaves a
/// timed-out call under way and asks for the same call again to resume it (a retriable error):
/// a broker that stops answering for longer than [`TXN_TIMEOUT`] causes that, and taking the
/// first timeout for fatal stops the router. A call still timing out after that (a broker gone
/// for longer) is returned, as at shutdown: the router stops, and a restart begins afresh.
/// Aborts are not made again: one that times out may wait for a producer epoch bump the broker
/// never gives, and a new producer ends the transaction instead ([`LoopError::Unended`]).
pub(super) fn resuming<T>(
    what: &str,
    telemetry: &Telemetry,
    shutdown: &CancellationToken,
    call: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> rdkafka::error::KafkaResult<T> {
    resuming_for(RESUME_FOR, what, telemetry, shutdown, call)
}

/// [`resuming`], making the call again for up to `limit`.
pub(super) fn resuming_for<T>(
    limit: Duration,
    what: &str,
    telemetry: &Telemetry,
    shutdown: &CancellationToken,
    call: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> rdkafka::error::KafkaResult<T> {
    let again = |e: &KafkaError| {
        telemetry.kafka_error(&format_args!("{what} timed out; making the call again to resume it: {e}"));
    };
    tollgate_common::kafka::resume_txn_call(limit, || shutdown.is_cancelled(), again, call)
}

/// Waits, before a transaction's commit, until every record `producer` holds is acknowledged.
/// A failed delivery (`failed()`; the record is `what`) or the timeout aborts the transaction at
/// once: it is left abortable, and its other records may never complete, so the commit (which
/// flushes first) would only time out.
pub(super) fn delivered_before_commit<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    failed: impl Fn() -> bool,
    what: &str,
) -> Result<(), TxnError> {
    match wait_delivered(producer, TXN_TIMEOUT, failed) {
        Ok(()) => Ok(()),
        Err(Undelivered::Failed) => Err(TxnError::Abort(format!("{what} was not delivered"))),
        Err(e) => Err(TxnError::Abort(e.to_string())),
    }
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("Kafka client error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Delivery(#[from] DeliveryFailed),
    /// An exactly-once batch's transaction could not be aborted: its abort timed out (the
    /// broker does not answer, or the transaction's records timed out and it waits for a
    /// producer epoch bump, which some brokers never give). [`run_loop`] starts the loop again
    /// with a new producer of the same transactional id, which fences this one and ends its
    /// transaction.
    #[error("an aborted routing transaction could not be ended: {0}")]
    Unended(KafkaError),
}

/// What the routing loops of one process share.
pub struct Routing {
    /// The running pipeline, replaced on reload.
    pub slot: Arc<PipelineSlot>,
    pub telemetry: Telemetry,
    /// The drift window every loop feeds (`None` without a configured baseline).
    pub drift: Option<Mutex<DriftWindow>>,
    /// Where `at_least_once` loops hand audit records to this process's chainer (`None` for
    /// `exactly_once`, whose loops write them to the intake in their transactions).
    pub hand_off: Option<Arc<HandOff>>,
}

impl Routing {
    /// The shared parts of `config`'s routing loops; `hand_off` leads to this process's
    /// chainer (kept for `at_least_once` only).
    pub fn new(
        config: &RouterConfig,
        slot: Arc<PipelineSlot>,
        telemetry: Telemetry,
        hand_off: &Arc<HandOff>,
    ) -> Routing {
        if let Some(mean) = config.drift.baseline_confidence_mean {
            telemetry.set_confidence_baseline(mean);
        }
        telemetry.expect_routing_loops(config.processing.routing_threads);
        let hand_off = (config.processing.guarantee == Guarantee::AtLeastOnce).then(|| Arc::clone(hand_off));
        Routing { slot, telemetry, drift: DriftWindow::new(&config.drift).map(Mutex::new), hand_off }
    }
}

struct Loop<'a> {
    slot: &'a PipelineSlot,
    /// The slot's pipeline as of the current batch, and the slot generation it came from.
    pipeline: Arc<Pipeline>,
    generation: u64,
    telemetry: &'a Telemetry,
    inflight: &'a InFlight,
    producer: &'a ThreadedProducer<DeliveryContext>,
    dead_letter_topic: &'a str,
    audit_topic: &'a str,
    /// See [`Routing::hand_off`].
    hand_off: Option<&'a HandOff>,
    changelog_topic: &'a str,
    /// `output.headers`: routed records and samples carry their headers.
    headers: bool,
    out: Output,
    drift: Option<&'a Mutex<DriftWindow>>,
    /// This loop's drift observations since the last poll batch.
    tally: DriftTally,
    /// The per-event metrics, added to the shared ones after each poll batch.
    routed: RoutedTally,
    /// The in-flight events this loop last added to the gauge.
    reported_in_flight: usize,
    /// Events routed or dead-lettered by this loop.
    handled: u64,
}

/// Which of a loop's audit records it gathers unsealed: those this process's chainer can take,
/// with JSON output (the chainer then only appends the chain fields and hashes); none without
/// a chainer in this process (`hand_off`) or with Avro output. The loop marks which intake
/// partitions between poll batches ([`mark_unsealed`]).
pub(crate) fn unsealed_for(config: &RouterConfig, hand_off: bool, intake: &IntakeBatches) -> Option<UnsealedFor> {
    let placement = intake.placement();
    (hand_off && config.output.format == RecordFormat::Json)
        .then(|| UnsealedFor::new(move |event_id| placement.partition_of(event_id), placement.partitions()))
}

/// Marks the intake partitions whose records `hand_off`'s chainer holds now. Ownership as of
/// now is a hint: the chainer checks again when it takes them, and passes on what it no longer
/// holds.
pub(crate) fn mark_unsealed(hand_off: Option<&HandOff>, unsealed: Option<&mut UnsealedFor>) {
    if let (Some(h), Some(unsealed)) = (hand_off, unsealed) {
        unsealed.mark(|p| h.owns(p as i32));
    }
}

/// Runs routing loop `index` (of `processing.routing_threads`) on the current thread until
/// `shutdown` is cancelled or a delivery fails. On the way out it drains in-flight records,
/// stores and commits their offsets, and leaves the consumer group. An exactly-once loop
/// whose aborted transaction could not be ended starts again, with a new producer and
/// consumer: the new producer fences the old one, and the batch is read again from the
/// committed offsets.
pub fn run_loop(
    config: &RouterConfig,
    routing: &Routing,
    index: usize,
    shutdown: &CancellationToken,
) -> Result<(), LoopError> {
    loop {
        match run_loop_once(config, routing, index, shutdown) {
            Err(LoopError::Unended(e)) if !shutdown.is_cancelled() => routing.telemetry.transaction_unended(&e),
            ended => return ended,
        }
    }
}

fn run_loop_once(
    config: &RouterConfig,
    routing: &Routing,
    index: usize,
    shutdown: &CancellationToken,
) -> Result<(), LoopError> {
    let (slot, telemetry) = (routing.slot.as_ref(), &routing.telemetry);
    let transactional = config.processing.guarantee == Guarantee::ExactlyOnce;
    let settings = routing_producer_config(config, index);
    // Audit records go to the intake in batches, placed as the producer would place them keyed.
    let intake_topic = config.topics.audit_intake.as_str();
    let intake =
        IntakeBatches::placed_like(&settings, &consumer_config(config, Member::Routing), intake_topic, TOPIC_WAIT)?;
    let unsealed_for = unsealed_for(config, routing.hand_off.is_some(), &intake);
    let mut tracking = InFlight::new(thread::current(), vec![config.kafka.input_topic.clone()]).with_intake(intake);
    if transactional {
        tracking = tracking.transactional();
    }
    let inflight = Arc::new(tracking);
    let producer: ThreadedProducer<DeliveryContext> =
        settings.create_with_context(DeliveryContext::new(telemetry, &inflight))?;
    if transactional {
        // The broker may not answer yet (a loop started again after a broker outage).
        resuming("initialising a routing loop's transactions", telemetry, shutdown, || {
            producer.init_transactions(TXN_TIMEOUT)
        })?;
        tracing::info!(
            routing_thread = index,
            transactional_id = %config.routing_transactional_id(index),
            "Routing exactly once (Kafka transactions)."
        );
    }
    let input_topic = config.kafka.input_topic.as_str();
    let consumer: BaseConsumer<RouterConsumerContext> =
        consumer_config(config, Member::Routing).create_with_context(RouterConsumerContext {
            telemetry: telemetry.clone(),
            inflight: Arc::clone(&inflight),
            producer: producer.clone(),
            input_topic: input_topic.to_owned(),
            audit_intake_topic: intake_topic.to_owned(),
            hand_off: routing.hand_off.clone(),
            drain_timeout: config.processing.shutdown_timeout.0,
            review: None,
            generation: Default::default(),
            membership: Membership::new(Member::Routing),
        })?;
    consumer.subscribe(&[input_topic])?;
    await_chainer(config, routing.hand_off.as_deref(), Member::Routing, telemetry, shutdown);
    // Ready once the group assigns this loop its partitions (the consumer context says so).
    tracing::info!(routing_thread = index, topic = input_topic, group = %config.kafka.group_id, "Consuming.");
    let mut state = Loop {
        slot,
        pipeline: slot.get(),
        generation: slot.generation(),
        telemetry,
        inflight: &inflight,
        producer: &producer,
        dead_letter_topic: &config.topics.dead_letter,
        audit_topic: &config.topics.audit_intake,
        hand_off: routing.hand_off.as_deref(),
        changelog_topic: &config.topics.pending_changelog,
        headers: config.output.headers,
        out: {
            let mut out = Output::default();
            out.unsealed_for = unsealed_for;
            out
        },
        drift: routing.drift.as_ref(),
        tally: DriftTally::default(),
        routed: telemetry.routed_tally(),
        reported_in_flight: 0,
        handled: 0,
    };
    let result = if transactional {
        state.run_transactional(&consumer, config, shutdown)
    } else {
        state.run(&consumer, config, shutdown)
    };
    consumer.context().unassigned();
    // After an unended transaction the drain below commits nothing: the transaction's records
    // are left to the producer that ends it, and the batch is read again from the committed
    // offsets.
    let leaving = if matches!(result, Err(LoopError::Unended(_))) && !shutdown.is_cancelled() {
        "Leaving the group to start the routing loop again."
    } else {
        "Stopping: draining in-flight records and committing."
    };
    tracing::info!(routing_thread = index, handled = state.handled, in_flight = inflight.events(), "{leaving}");
    consumer.context().drain_and_commit(&consumer);
    consumer.unsubscribe();
    state.report_in_flight();
    result
}

impl Loop<'_> {
    /// Switches to a reloaded pipeline, between two batches.
    fn refresh(&mut self) {
        let generation = self.slot.generation();
        if generation != self.generation {
            self.pipeline = self.slot.get();
            self.generation = generation;
            tracing::info!(policy_version = self.pipeline.policy_version(), "Routing with the reloaded policy.");
        }
    }

    /// Moves this loop's share of the in-flight gauge to its current count.
    fn report_in_flight(&mut self) {
        let now = self.inflight.events();
        self.telemetry.in_flight_moved(self.reported_in_flight, now);
        self.reported_in_flight = now;
    }

    /// Hands the batch's drift observations to the shared window.
    fn measure_drift(&mut self) {
        let Some(window) = self.drift else { return };
        if self.tally.seen() == 0 {
            return;
        }
        let reading = window.lock().unwrap_or_else(std::sync::PoisonError::into_inner).absorb(&mut self.tally);
        if let Some(reading) = reading {
            self.telemetry.drift_measured(reading);
        }
    }

    fn run(
        &mut self,
        consumer: &BaseConsumer<RouterConsumerContext>,
        config: &RouterConfig,
        shutdown: &CancellationToken,
    ) -> Result<(), LoopError> {
        let (batch_size, max_in_flight) = (config.processing.batch_size, config.processing.max_in_flight);
        // Since when the loop has waited for acknowledgements with none coming, and, once it
        // has said so (it is not ready then: it does not poll, so it would not learn of a lost
        // assignment either until they come), whether that took a held assignment.
        let (mut waiting_since, mut stalled) = (None::<Instant>, None::<bool>);
        while !shutdown.is_cancelled() {
            if self.inflight.settle(consumer)? > 0 {
                waiting_since = None;
            }
            self.report_in_flight();
            if self.inflight.events() + batch_size > max_in_flight {
                // Backpressure: wait for acknowledgements rather than buffer more input.
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if stalled.is_none() && since.elapsed() >= STALLED {
                    stalled = Some(consumer.context().stalled(since.elapsed()));
                }
                thread::park_timeout(BACKPRESSURE_WAIT);
                continue;
            }
            waiting_since = None;
            if stalled.take() == Some(true) {
                consumer.context().unstalled();
            }
            self.refresh();
            mark_unsealed(self.hand_off, self.out.unsealed_for.as_mut());
            let now = SystemTime::now();
            let telemetry = self.telemetry;
            poll_batch(consumer, batch_size, telemetry, |message| self.route(&message, now))?;
            self.inflight.seal_with(|r| send_intake(self.producer, self.audit_topic, self.hand_off, r))?;
            self.measure_drift();
            self.routed.flush();
        }
        Ok(())
    }

    /// The exactly-once loop: each batch's outputs and input offsets go in one transaction. An
    /// abortable failure aborts it and re-reads the batch; a rebalance while polling discards
    /// the batch (its partitions may have moved) and re-reads what is still assigned.
    fn run_transactional(
        &mut self,
        consumer: &BaseConsumer<RouterConsumerContext>,
        config: &RouterConfig,
        shutdown: &CancellationToken,
    ) -> Result<(), LoopError> {
        let batch_size = config.processing.batch_size;
        while !shutdown.is_cancelled() {
            // Transactions are committed per batch: nothing stays in flight across batches.
            self.inflight.settle(consumer)?;
            self.refresh();
            let generation = consumer.context().generation.load(Ordering::Acquire);
            let mut messages = Vec::with_capacity(batch_size);
            poll_batch(consumer, batch_size, self.telemetry, |m| {
                messages.push(m);
                Ok::<_, LoopError>(())
            })?;
            if messages.is_empty() {
                continue;
            }
            if consumer.context().generation.load(Ordering::Acquire) != generation {
                rewind(consumer, &messages);
                continue;
            }
            let routed = self.route_in_transaction(consumer, &messages, shutdown);
            self.measure_drift();
            self.routed.flush();
            match routed {
                Ok(()) => self.telemetry.transaction(true, None),
                Err(TxnError::Abort(e)) => {
                    self.telemetry.transaction(false, Some(&e));
                    self.producer.context().aborting.start();
                    match self.producer.abort_transaction(TXN_TIMEOUT) {
                        Ok(()) => {}
                        Err(e) if shutdown.is_cancelled() || txn_fatal(&e) => return Err(e.into()),
                        // Asking again would wait on the same thing; a new producer ends it.
                        Err(e) => return Err(LoopError::Unended(e)),
                    }
                    // Audit records gathered for the aborted batch would otherwise join the
                    // next transaction, beside the ones its re-read writes.
                    self.inflight.abandon_open();
                    rewind(consumer, &messages);
                }
                Err(TxnError::Fatal(e)) => return Err(e),
            }
        }
        Ok(())
    }

    fn route_in_transaction(
        &mut self,
        consumer: &BaseConsumer<RouterConsumerContext>,
        messages: &[BorrowedMessage<'_>],
        shutdown: &CancellationToken,
    ) -> Result<(), TxnError> {
        self.producer.context().aborting.end();
        self.producer.begin_transaction().map_err(TxnError::from)?;
        let batch = self.inflight.open_batch();
        let now = SystemTime::now();
        let mut offsets = TopicPartitionList::new();
        for m in messages {
            match self.route(m, now) {
                Ok(()) => {}
                // A record the producer would not take: abort, and retry the batch.
                Err(LoopError::Delivery(d)) => return Err(TxnError::Abort(d.to_string())),
                Err(e) => return Err(TxnError::Fatal(e)),
            }
            offsets
                .add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset() + 1))
                .map_err(TxnError::from)?;
        }
        let (producer, topic) = (self.producer, self.audit_topic);
        if let Err(e) = self.inflight.seal_with(|r| send_intake(producer, topic, None, r)) {
            return Err(TxnError::Abort(e.to_string()));
        }
        delivered_before_commit(self.producer, || batch.has_failed(), "a record of the batch")?;
        let group = consumer
            .group_metadata()
            .ok_or_else(|| TxnError::Fatal(DeliveryFailed("the consumer has no group metadata".into()).into()))?;
        let (producer, telemetry) = (self.producer, self.telemetry);
        resuming("sending a routing transaction's offsets", telemetry, shutdown, || {
            producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)
        })?;
        resuming("committing a routing transaction", telemetry, shutdown, || producer.commit_transaction(TXN_TIMEOUT))
            .map_err(TxnError::from)
    }

    /// Processes one input record and enqueues its output records.
    fn route(&mut self, message: &BorrowedMessage<'_>, now: SystemTime) -> Result<(), LoopError> {
        self.handled += 1;
        // Taken per event, not once per poll: a revocation inside the poll (its callback
        // drains) seals the open batch, and the poll's later events must join a new one.
        let batch = self.inflight.open_batch();
        let source = Source { topic: message.topic(), partition: message.partition(), offset: message.offset() };
        let verdict = self.pipeline.process(message.payload(), source, now, &mut self.out);
        match verdict {
            Verdict::Routed { route, topic, pre_accept, sample, risk, confidence, not_numeric } => {
                let key = message.key().unwrap_or(self.out.fallback_key.as_bytes());
                for topic in [Some(topic), pre_accept].into_iter().flatten() {
                    let mut record =
                        BaseRecord::with_opaque_to(topic, Arc::clone(&batch)).key(key).payload(&self.out.value);
                    if self.headers {
                        record = record.headers(routed_headers(
                            route,
                            self.pipeline.policy_version(),
                            &self.out.model_version,
                        ));
                    }
                    send(self.producer, record)?;
                }
                if let Some(sample_topic) = sample {
                    let mut record =
                        BaseRecord::with_opaque_to(sample_topic, Arc::clone(&batch)).key(key).payload(&self.out.sample);
                    if self.headers {
                        record = record.headers(sample_headers(self.pipeline.policy_version()));
                    }
                    send(self.producer, record)?;
                }
                if !self.out.changelog.is_empty() {
                    // The review join picks the event up from the changelog (same key as decisions).
                    let record = BaseRecord::with_opaque_to(self.changelog_topic, Arc::clone(&batch))
                        .key(self.out.event_id.as_bytes())
                        .payload(&self.out.changelog);
                    send(self.producer, record)?;
                }
                self.routed.routed(route, risk, confidence);
                if let Some(field) = not_numeric {
                    self.telemetry.policy_bound_not_numeric(field);
                }
                if self.drift.is_some() {
                    self.tally.observe(risk, confidence);
                }
            }
            Verdict::Rejected(rejection) => {
                let mut record: BaseRecord<'_, [u8], [u8], Arc<Batch>> =
                    BaseRecord::with_opaque_to(self.dead_letter_topic, Arc::clone(&batch))
                        .headers(dead_letter_headers(&rejection, &source));
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                // One the producer would refuse is left out (the rejection says so).
                if let Some(payload) = message.payload().filter(|p| p.len() <= self.pipeline.max_record_bytes()) {
                    record = record.payload(payload);
                }
                send(self.producer, record)?;
                self.telemetry.dead_lettered(rejection.reason, &rejection.message);
            }
        }
        let (producer, topic, hand_off) = (self.producer, self.audit_topic, self.hand_off);
        self.inflight.record_audited_event(
            (&batch, 0),
            (source.partition, source.offset),
            (self.out.event_id.as_bytes(), (&self.out.audit, self.out.audit_form)),
            |r| send_intake(producer, topic, hand_off, r),
        )
    }
}

/// The headers of a routed record (the `tollgate bench` baseline writes the same).
pub fn routed_headers(route: Route, policy_version: &str, model_version: &str) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(3)
        .insert(Header { key: headers::ROUTE, value: Some(route.as_str()) })
        .insert(Header { key: headers::POLICY_VERSION, value: Some(policy_version) })
        .insert(Header { key: headers::MODEL_VERSION, value: Some(model_version) })
}

/// The headers of an auto-committed event's copy drawn for a post-verify audit sample.
pub fn sample_headers(policy_version: &str) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(2)
        .insert(Header { key: headers::ROUTE, value: Some(Route::AsyncReview.as_str()) })
        .insert(Header { key: headers::POLICY_VERSION, value: Some(policy_version) })
}

/// The headers of a dead letter: why, and where the original record was read.
pub fn dead_letter_headers(rejection: &Rejection, source: &Source<'_>) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(5)
        .insert(Header { key: headers::ERROR_REASON, value: Some(rejection.reason.as_str()) })
        .insert(Header { key: headers::ERROR_MESSAGE, value: Some(rejection.message.as_str()) })
        .insert(Header { key: headers::SOURCE_TOPIC, value: Some(source.topic) })
        .insert(Header { key: headers::SOURCE_PARTITION, value: Some(&source.partition.to_string()) })
        .insert(Header { key: headers::SOURCE_OFFSET, value: Some(&source.offset.to_string()) })
}

/// Seeks each partition of an abandoned batch back to its first record (partitions no longer
/// assigned are left to their new owner).
pub(super) fn rewind<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    messages: &[BorrowedMessage<'_>],
) {
    let mut first: Vec<(&str, i32, i64)> = Vec::new();
    for m in messages {
        if !first.iter().any(|(t, p, _)| *t == m.topic() && *p == m.partition()) {
            first.push((m.topic(), m.partition(), m.offset()));
        }
    }
    for (topic, partition, offset) in first {
        if let Err(e) = consumer.seek(topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
            tracing::debug!(topic, partition, error = %e, "Not rewound (partition no longer assigned).");
        }
    }
}

/// Waits, once `member` has subscribed, up to `processing.chainer_join_wait` for `hand_off`'s
/// chainer to be assigned its intake partitions, so the audit records of the first events are
/// handed to it rather than sent through the intake. The group join goes on in the client
/// meanwhile; the assignment is taken at the first poll.
pub(super) fn await_chainer(
    config: &RouterConfig,
    hand_off: Option<&HandOff>,
    member: Member,
    telemetry: &Telemetry,
    shutdown: &CancellationToken,
) {
    let (wait, started) = (config.processing.chainer_join_wait.0, Instant::now());
    if let Some(h) = hand_off.filter(|_| !wait.is_zero()) {
        let assigned = h.wait_for_chainer(wait, shutdown);
        telemetry.chainer_awaited(member, assigned, started.elapsed());
    }
}

/// Enqueues an intake batch record (see [`tollgate_schemas::intake`]), or hands it to this
/// process's chainer when `hand_off` is given and the chainer owns its partition.
pub(super) fn send_intake(
    producer: &ThreadedProducer<DeliveryContext>,
    topic: &str,
    hand_off: Option<&HandOff>,
    record: IntakeRecord<'_>,
) -> Result<(), LoopError> {
    if let Some(h) = hand_off.filter(|h| h.owns(record.partition)) {
        let context = producer.context();
        match h.hand(record.partition, record.records, record.payload, record.batch, &context.inflight) {
            Ok(()) => return Ok(()),
            Err(NotHanded::Behind) => context.telemetry.audit_hand_off_behind(record.records),
            Err(NotHanded::Closed) => {}
        }
    }
    let mut converted = AuditBatch::default();
    let payload = match record.payload.intake_value(&mut converted) {
        Ok(payload) => payload,
        // The loop laid these records out itself: one that does not read back is a defect,
        // and the batch fails rather than lose it (its offsets are never stored).
        Err(e) => {
            let why = format!("audit records gathered unsealed do not read back: {e}");
            record.batch.fail(why.clone());
            return Err(DeliveryFailed(why).into());
        }
    };
    let out = BaseRecord::with_opaque_to(topic, Arc::clone(record.batch))
        .partition(record.partition)
        .payload(payload)
        .headers(batch_headers(record.records));
    send::<[u8], [u8]>(producer, out)
}

/// Enqueues a record, waiting while the producer queue is full. Any other error fails the batch.
pub(super) fn send<K, P>(
    producer: &ThreadedProducer<DeliveryContext>,
    mut record: BaseRecord<'_, K, P, Arc<Batch>>,
) -> Result<(), LoopError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    record.delivery_opaque.add_record();
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // The producer's own thread is draining the queue; give it a moment.
                record = back;
                thread::sleep(Duration::from_millis(1));
            }
            Err((e, back)) => {
                let topic = back.topic.to_owned();
                back.delivery_opaque.fail(format!("{topic}: {e}"));
                back.delivery_opaque.ack();
                return Err(DeliveryFailed(format!("enqueueing a record for {topic} failed: {e}")).into());
            }
        }
    }
}
