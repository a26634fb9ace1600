//! Client contexts: the callbacks librdkafka makes into the router (deliveries, rebalances,
//! statistics, errors and logs).

use super::group::{Member, Membership};
use super::handoff::HandOff;
use super::inflight::{Batch, InFlight};
use crate::review::ReviewState;
use crate::telemetry::Telemetry;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_common::kafka::log_to_tracing;

/// The producer's context: counts deliveries down on their batch.
pub struct DeliveryContext {
    pub telemetry: Telemetry,
    pub inflight: Arc<InFlight>,
    /// Set while an exactly-once loop aborts its transaction.
    pub aborting: Aborting,
}

impl DeliveryContext {
    pub fn new(telemetry: &Telemetry, inflight: &Arc<InFlight>) -> DeliveryContext {
        DeliveryContext { telemetry: telemetry.clone(), inflight: Arc::clone(inflight), aborting: Aborting::default() }
    }
}

/// Whether a transactional producer's transaction is being aborted. Records that fail then
/// are the abort's doing (purged, or timed out while the abort waited for a broker that does
/// not answer), and their batch is read again: they are not records the broker refused, and
/// are not counted as such. The records that failed before the abort, and caused it, are.
#[derive(Debug, Default)]
pub struct Aborting(AtomicBool);

impl Aborting {
    /// From the abort's start. A producer whose abort fails is dropped with it still set: the
    /// records it then gives up on belong to the transaction its successor ends.
    pub fn start(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// At the next transaction's start.
    pub fn end(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Reports a record the producer gave up on.
    pub fn delivery_failed(&self, telemetry: &Telemetry, topic: &str, error: &KafkaError) {
        if self.0.load(Ordering::Acquire) {
            telemetry.aborted_record(topic, error);
        } else {
            telemetry.delivery_failed(topic, error);
        }
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.telemetry.kafka_error(&format_args!("producer: {error}: {reason}"));
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Arc<Batch>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<Batch>) {
        if let Err((error, message)) = result {
            self.aborting.delivery_failed(&self.telemetry, message.topic(), error);
            batch.fail(format!("{}: {error}", message.topic()));
        }
        acknowledged(&self.telemetry, &self.inflight, &batch);
    }
}

/// One record of `batch` was acknowledged (or failed, with the batch marked): counts it down,
/// and wakes the loop when that completed the batch.
pub(super) fn acknowledged(telemetry: &Telemetry, inflight: &InFlight, batch: &Batch) {
    if let Some((events, age)) = batch.ack() {
        telemetry.batch_acknowledged(events, age);
        inflight.wake();
    }
}

/// The consumer's context: drains and commits on revocation, reports lag and errors.
pub struct RouterConsumerContext {
    pub telemetry: Telemetry,
    pub inflight: Arc<InFlight>,
    pub producer: ThreadedProducer<DeliveryContext>,
    pub input_topic: String,
    /// Where the routing loop's gathered audit records go when a drain seals their batch.
    pub audit_intake_topic: String,
    /// The loop's hand-off to this process's chainer (see [`super::handoff`]).
    pub hand_off: Option<Arc<HandOff>>,
    pub drain_timeout: Duration,
    /// For the review join: the state to hand over on rebalance.
    pub review: Option<ReviewHandOver>,
    /// Counts rebalances; a transactional batch polled across one is discarded and re-read.
    pub generation: AtomicU64,
    /// The consumer's place in its group: a routing loop is ready while it holds an assignment.
    pub membership: Membership,
}

/// How the review join hands state over on rebalance: a revoked changelog partition's state is
/// dropped; an assigned one is replayed from the changelog's beginning.
pub struct ReviewHandOver {
    pub changelog_topic: String,
    pub state: Arc<ReviewState>,
    /// When partitions were last assigned (the loop holds SLA ticks while replaying).
    pub assigned_at: Mutex<Option<Instant>>,
}

impl RouterConsumerContext {
    /// Waits for in-flight records, stores the offsets of everything acknowledged and commits
    /// them synchronously. Used on revocation and at shutdown.
    pub fn drain_and_commit(&self, consumer: &BaseConsumer<Self>) {
        // The open batch's audit records go out with it: its offsets are stored only once they
        // are acknowledged too.
        let hand_off = self.hand_off.as_deref();
        if let Err(e) = self
            .inflight
            .seal_with(|r| super::runner::send_intake(&self.producer, &self.audit_intake_topic, hand_off, r))
        {
            tracing::error!(error = %e, "Audit records of the open batch were not enqueued; that batch stays uncommitted.");
        }
        let deadline = Instant::now() + self.drain_timeout;
        let mut drained = tollgate_common::kafka::wait_delivered(&self.producer, self.drain_timeout, || false)
            .map_err(|e| e.to_string());
        // Batches handed to the chainer are acknowledged when its transaction commits; the loop
        // is woken then.
        while drained.is_ok() && !self.inflight.all_complete() {
            if Instant::now() >= deadline {
                drained = Err("audit records handed to the chainer were not chained in time".into());
                break;
            }
            std::thread::park_timeout(Duration::from_millis(5));
        }
        if let Err(e) = drained {
            tracing::warn!(
                error = %e,
                unacknowledged = self.inflight.events(),
                "Not every in-flight record was acknowledged in time; those events stay uncommitted and will be replayed."
            );
        }
        if let Err(e) = self.inflight.settle(consumer) {
            tracing::error!(error = %e, "A delivery failed; offsets from that batch on stay uncommitted.");
        }
        // The commit callback counts the result; here it is only logged.
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "Synchronous offset commit failed."),
        }
    }

    /// The routing loop has waited `waited` for acknowledgements with none coming. It is not
    /// ready meanwhile, as without an assignment: records are not getting through, and while it
    /// waits it does not poll, so it would learn of a lost assignment (the broker not
    /// answering, say) only once they come. Returns whether it held an assignment, which
    /// [`RouterConsumerContext::unstalled`] gives back.
    pub fn stalled(&self, waited: Duration) -> bool {
        tracing::warn!(?waited, in_flight = self.inflight.events(), "No record acknowledged for a while: not ready.");
        let held = self.membership.revoke();
        if held && self.membership.member == Member::Routing {
            self.telemetry.routing_loop_ready(false);
        }
        held
    }

    /// Acknowledgements came again after [`RouterConsumerContext::stalled`] took a held
    /// assignment: the loop is ready again (until the poll, if the assignment was lost meanwhile,
    /// revokes it).
    pub fn unstalled(&self) {
        tracing::info!("Records are acknowledged again.");
        if self.membership.assign() && self.membership.member == Member::Routing {
            self.telemetry.routing_loop_ready(true);
        }
    }

    /// The consumer holds no assignment any more (a revocation, or it leaves the group).
    pub fn unassigned(&self) {
        if self.membership.revoke() && self.membership.member == Member::Routing {
            self.telemetry.routing_loop_ready(false);
        }
    }
}

impl ClientContext for RouterConsumerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.telemetry.kafka_error(&format_args!("consumer: {error}: {reason}"));
    }

    fn stats(&self, statistics: Statistics) {
        self.membership.report(&statistics, &self.telemetry);
        let Some(topic) = statistics.topics.get(&self.input_topic) else {
            return;
        };
        for (partition, p) in &topic.partitions {
            // Partition -1 is librdkafka's internal "unassigned" bucket; -1 lag means unknown.
            if *partition >= 0 && p.consumer_lag >= 0 {
                self.telemetry.set_consumer_lag(&self.input_topic, *partition, p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for RouterConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let lost = consumer.assignment_lost();
            // An eager revocation takes every partition, and a lost one (the session ran out,
            // say with the broker not answering) has taken them already: the loop is not ready
            // from now on, not only once the drain, which waits for acknowledgements, is over.
            if lost || !matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative) {
                self.unassigned();
            }
            tracing::info!(partitions = partitions.count(), lost, "Partitions revoked; draining and committing.");
            self.drain_and_commit(consumer);
            if let Some(review) = &self.review {
                for e in partitions.elements_for_topic(&review.changelog_topic) {
                    review.state.revoke(e.partition());
                }
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        match rebalance {
            Rebalance::Assign(partitions) => {
                let list: Vec<(String, i32)> =
                    partitions.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                tracing::info!(?list, "Partitions assigned.");
                // An empty assignment counts: the group has settled with more members than
                // partitions.
                if self.membership.assign() && self.membership.member == Member::Routing {
                    self.telemetry.routing_loop_ready(true);
                }
                if let Some(review) = &self.review {
                    // Replay the changelog partitions from the beginning to rebuild their state;
                    // other topics resume from their committed offsets.
                    let mut tpl = TopicPartitionList::new();
                    for e in partitions.elements() {
                        let from = if e.topic() == review.changelog_topic { Offset::Beginning } else { Offset::Stored };
                        let _ = tpl.add_partition_offset(e.topic(), e.partition(), from);
                    }
                    if let Err(e) = consumer.assign(&tpl) {
                        self.telemetry.kafka_error(&format_args!("re-assigning for the changelog replay: {e}"));
                    }
                    *review.assigned_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Instant::now());
                }
            }
            Rebalance::Revoke(_) => {
                // An eager revocation takes every partition; an incremental one (cooperative
                // assignment) may leave some, and the loop stays ready while it holds any.
                if consumer.assignment().map_or(true, |held| held.count() == 0) {
                    self.unassigned();
                }
            }
            Rebalance::Error(e) => {
                // The client unassigns after a failed rebalance.
                self.unassigned();
                self.telemetry.kafka_error(&format_args!("rebalance: {e}"));
            }
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.telemetry.offsets_committed(Ok(())),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => self.telemetry.offsets_committed(Err(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::names;

    fn delivery_failures(t: &Telemetry, n: u64) -> bool {
        t.render().contains(&format!("\n{} {n}\n", names::DELIVERY_FAILURES))
    }

    /// Records that time out while their transaction is aborted (a broker that stopped
    /// answering) are not counted as records the broker refused; once the next transaction
    /// starts, a failed record is.
    #[test]
    fn records_failing_during_an_abort_are_not_delivery_failures() {
        let (t, aborting) = (Telemetry::new(), Aborting::default());
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        aborting.start();
        aborting.delivery_failed(&t, "audit", &timed_out);
        assert!(delivery_failures(&t, 0), "{}", t.render());
        aborting.end();
        aborting.delivery_failed(&t, "audit", &timed_out);
        assert!(delivery_failures(&t, 1), "{}", t.render());
    }
}
