//! The chainer's Kafka client contexts: its consumer's counts rebalances and tells the routing
//! loops which intake partitions it holds; its producer's counts failed deliveries.

use crate::kafka::context::Aborting;
use crate::kafka::group::Membership;
use crate::kafka::handoff::HandOff;
use crate::telemetry::Telemetry;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tollgate_common::kafka::log_to_tracing;

/// Counts rebalances, so a batch polled across one is abandoned; reports a group that does not
/// settle; tells the routing loops which intake partitions it holds.
pub(super) struct ChainConsumerContext {
    pub(super) generation: AtomicU64,
    pub(super) telemetry: Telemetry,
    pub(super) membership: Membership,
    pub(super) hand_off: Option<Arc<HandOff>>,
    /// The audit intake topic, whose partitions its statistics count.
    pub(super) intake: String,
}

impl ClientContext for ChainConsumerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.telemetry.kafka_error(&format_args!("audit chainer consumer: {error}: {reason}"));
    }

    fn stats(&self, statistics: Statistics) {
        self.membership.report(&statistics, &self.telemetry);
        if let Some(topic) = statistics.topics.get(&self.intake) {
            // Partition -1 is librdkafka's internal "unassigned" bucket.
            self.telemetry.audit_intake_partitions(topic.partitions.keys().filter(|p| **p >= 0).count());
        }
    }
}

impl ConsumerContext for ChainConsumerContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.telemetry.audit_chain_partitions_held(0);
        if let Some(h) = &self.hand_off {
            h.set_owned([]);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let held: Vec<i32> = held_partitions(consumer);
        self.telemetry.audit_chain_partitions_held(held.len());
        tracing::info!(partitions = ?held, "The audit chainer holds these intake partitions.");
        if let Some(h) = &self.hand_off {
            h.set_owned(held);
            if matches!(rebalance, Rebalance::Assign(_)) {
                h.chainer_assigned();
            }
        }
    }
}

/// Counts failed deliveries of the open transaction.
pub(super) struct ChainProducerContext {
    pub(super) failures: AtomicUsize,
    pub(super) telemetry: Telemetry,
    /// Set while the chainer aborts its transaction.
    pub(super) aborting: Aborting,
}

impl ClientContext for ChainProducerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.telemetry.kafka_error(&format_args!("audit chainer producer: {error}: {reason}"));
    }
}

impl ProducerContext for ChainProducerContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            self.aborting.delivery_failed(&self.telemetry, message.topic(), error);
            self.failures.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The intake partitions `consumer` holds now (none when the client cannot say).
pub(super) fn held_partitions<C: ConsumerContext, B: FromIterator<i32> + Default>(consumer: &BaseConsumer<C>) -> B {
    consumer.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
}
