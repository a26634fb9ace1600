//! Kafka at the edges of the router: client settings, topic set-up, and the
//! consume → process → produce loop with at-least-once offset tracking.
//!
//! # Delivery guarantee
//! Offsets are stored manually (`enable.auto.offset.store=false`) and committed by librdkafka's
//! periodic auto-commit, on partition revocation and at shutdown. An input offset is stored only
//! when every record produced for it and for all earlier input of its batch (the routed record or
//! dead letter, and the intake batch holding the audit record) has been acknowledged by the broker (`acks=all`,
//! idempotent producer), or, for an intake batch handed to the process's own chainer
//! ([`handoff`]), chained in a committed transaction. So a crash at any point loses nothing; it
//! may replay what was produced but not yet committed.

mod admin;
mod chain;
mod context;
pub mod group;
pub mod handoff;
mod inflight;
pub mod intake;
mod join;
pub mod reader;
mod runner;

pub use admin::ensure_topics;
pub use chain::{chain_producer_config, run_chain, Head};
pub use handoff::HandOff;
pub use join::{run_join, state_headers, writer_id, STATE_SUFFIX};
pub use runner::{dead_letter_headers, routed_headers, run_loop, sample_headers, LoopError, Routing};

use crate::config::{Guarantee, RouterConfig};
use group::Member;
use rdkafka::ClientConfig;

/// The value of a record's header `key`: `None` when the record has no such header,
/// `Some(None)` when it has one without a value.
pub(crate) fn header<'m, M: rdkafka::Message>(m: &'m M, key: &str) -> Option<Option<&'m [u8]>> {
    use rdkafka::message::Headers;
    m.headers()?.iter().find(|h| h.key == key).map(|h| h.value)
}

/// How long one poll waits for input when idle; bounds how late shutdown is noticed.
pub(crate) const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a loop sleeps when its in-flight bound is reached (a completion wakes it sooner).
pub(crate) const BACKPRESSURE_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// Polls up to `max` records: waits up to [`IDLE_POLL`] for the first, then takes only what is
/// already fetched. Hands each record to `each`; a client error ends the batch (counted).
pub(crate) fn poll_batch<'c, C, E>(
    consumer: &'c rdkafka::consumer::BaseConsumer<C>,
    max: usize,
    telemetry: &crate::telemetry::Telemetry,
    mut each: impl FnMut(rdkafka::message::BorrowedMessage<'c>) -> Result<(), E>,
) -> Result<usize, E>
where
    C: rdkafka::consumer::ConsumerContext,
{
    poll_weighed(consumer, max, IDLE_POLL, telemetry, |m| each(m).map(|()| 1))
}

/// [`poll_batch`] where a record may count for more than one: `each` returns its weight, and
/// polling stops once the weights reach `max`; the first record is waited for up to
/// `first_wait`. Returns the total weight.
pub(crate) fn poll_weighed<'c, C, E>(
    consumer: &'c rdkafka::consumer::BaseConsumer<C>,
    max: usize,
    first_wait: std::time::Duration,
    telemetry: &crate::telemetry::Telemetry,
    mut each: impl FnMut(rdkafka::message::BorrowedMessage<'c>) -> Result<usize, E>,
) -> Result<usize, E>
where
    C: rdkafka::consumer::ConsumerContext,
{
    let mut timeout = first_wait;
    let mut taken = 0;
    while taken < max {
        match consumer.poll(timeout) {
            None => break,
            Some(Err(e)) => {
                telemetry.kafka_error(&e);
                break;
            }
            Some(Ok(m)) => taken += each(m)?.max(1),
        }
        timeout = std::time::Duration::ZERO;
    }
    Ok(taken)
}

/// Consumer settings of `member`: Tollgate's, then the user's `kafka.consumer` overrides, then
/// the member's own (`kafka.consumers.<member>`).
pub fn consumer_config(config: &RouterConfig, member: Member) -> ClientConfig {
    let k = &config.kafka;
    let mut c = tollgate_common::kafka::consumer_base(&k.brokers, &k.client_id);
    c.set("group.id", &k.group_id)
        // Offsets are stored by the router once the outputs are acknowledged, and committed by
        // librdkafka in the background: at-least-once without a synchronous commit per batch.
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Statistics feed the consumer-lag gauge.
        .set("statistics.interval.ms", "5000");
    if config.processing.guarantee == Guarantee::ExactlyOnce {
        // Offsets are committed by the producer's transactions, never by the consumer.
        c.set("enable.auto.commit", "false").set("isolation.level", "read_committed");
    }
    for (key, value) in k.consumer.iter().chain(member.settings(&k.consumers)) {
        c.set(key, value);
    }
    c
}

/// Producer settings: Tollgate's, then the user's `kafka.producer` overrides.
pub fn producer_config(config: &RouterConfig) -> ClientConfig {
    let k = &config.kafka;
    let mut c = tollgate_common::kafka::producer_base(&k.brokers, &k.client_id);
    // Room for every in-flight event's records (one or two, the audit records being batched), so the bound on in-flight events (not the
    // producer queue) is what applies backpressure.
    let queue = (config.processing.max_in_flight * 2 + 1_000).to_string();
    c.set("batch.num.messages", "10000").set("queue.buffering.max.messages", &queue);
    for (key, value) in &k.producer {
        c.set(key, value);
    }
    c
}

/// Routing loop `index`'s producer settings: [`producer_config`], transactional for
/// `exactly_once`.
pub fn routing_producer_config(config: &RouterConfig, index: usize) -> ClientConfig {
    let mut c = producer_config(config);
    if config.processing.guarantee == Guarantee::ExactlyOnce {
        c.set("transactional.id", config.routing_transactional_id(index));
    }
    c
}

#[cfg(test)]
mod tests;
