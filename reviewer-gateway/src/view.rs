//! The consumer that builds the gateway's view: it reads every partition of the review, resolved,
//! escalation, decision and gateway-state topics from the beginning (no consumer group: every
//! gateway instance needs the whole view), applies each record to the [`CaseStore`], and turns
//! ready once it has caught up.
//!
//! Catching up: the end offsets are read at start; the view is ready when every partition has
//! reached its end, or when no record arrived for `LULL` (some brokers report end offsets that
//! are never reached). A record that cannot be decoded is logged with its position and counted
//! (`tollgate_gateway_records_total{outcome="malformed"}`); it is another service's output, so
//! the gateway neither stops nor dead-letters it.

use crate::config::{GatewayConfig, Topics};
use crate::records::{self, RecordDecoder};
use crate::store::{CaseStore, Change, Position};
use crate::telemetry::Telemetry;
use crate::webhook::{Notice, Notifier, Trigger};
use crate::GatewayError;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tollgate_common::kafka::LoggingContext;

/// Quiet time after which the view counts as caught up, whatever the end offsets said.
const LULL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Routed,
    Resolved,
    Escalation,
    Decision,
    State,
}

impl Kind {
    const fn label(self) -> &'static str {
        match self {
            Kind::Routed => "routed",
            Kind::Resolved => "resolved",
            Kind::Escalation => "escalation",
            Kind::Decision => "decision",
            Kind::State => "state",
        }
    }
}

/// The view builder.
pub struct View {
    consumer: StreamConsumer<LoggingContext>,
    state: Applier,
}

/// Applies records to the store and tracks the catch-up.
struct Applier {
    kinds: HashMap<String, Kind>,
    decoder: RecordDecoder,
    store: Arc<CaseStore>,
    telemetry: Telemetry,
    notifier: Option<Notifier>,
    ready: Arc<AtomicBool>,
    /// (topic, partition) → the end offset still to reach.
    remaining: HashMap<(String, i32), i64>,
    /// Notifications held until the view has caught up (then sent if still relevant).
    deferred: Vec<Notice>,
    replay_window_ms: i64,
    escalation_tier: i32,
}

fn consumer_config(config: &GatewayConfig) -> ClientConfig {
    let mut c = tollgate_common::kafka::consumer_base(&config.kafka.brokers, &config.kafka.client_id);
    // Partitions are assigned, not subscribed; the group id only names the client.
    c.set("group.id", format!("{}.view", config.kafka.client_id))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // The gateway's own writes are transactional: an aborted action is never applied.
        .set("isolation.level", "read_committed");
    for (key, value) in &config.kafka.consumer {
        c.set(key, value);
    }
    c
}

fn kinds(t: &Topics) -> HashMap<String, Kind> {
    HashMap::from([
        (t.sync_review.clone(), Kind::Routed),
        (t.async_review.clone(), Kind::Routed),
        (t.resolved.clone(), Kind::Resolved),
        (t.escalations.clone(), Kind::Escalation),
        (t.review_decisions.clone(), Kind::Decision),
        (t.gateway_state.clone(), Kind::State),
    ])
}

impl View {
    /// Creates the consumer and assigns every partition of the view's topics from the start.
    pub fn start(
        config: &GatewayConfig,
        decoder: RecordDecoder,
        store: Arc<CaseStore>,
        telemetry: Telemetry,
        notifier: Option<Notifier>,
        ready: Arc<AtomicBool>,
    ) -> Result<View, GatewayError> {
        let consumer: StreamConsumer<LoggingContext> =
            consumer_config(config).create_with_context(telemetry.client_context("view consumer"))?;
        let kinds = kinds(&config.topics);
        let mut assignment = TopicPartitionList::new();
        let mut remaining = HashMap::new();
        let timeout = Duration::from_secs(10);
        for topic in kinds.keys() {
            let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
            let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
            if partitions == 0 {
                return Err(GatewayError::Config(format!(
                    "topic {topic} does not exist (start the router first, or set kafka.create_topics)"
                )));
            }
            for p in 0..partitions as i32 {
                assignment.add_partition_offset(topic, p, Offset::Beginning)?;
                let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
                if high > low {
                    remaining.insert((topic.clone(), p), high);
                }
            }
        }
        consumer.assign(&assignment)?;
        tracing::info!(
            partitions = assignment.count(),
            to_read = remaining.len(),
            "Building the review view from Kafka."
        );
        let (replay_window_ms, escalation_tier) =
            config.webhook.as_ref().map_or((0, i32::MAX), |w| (w.replay_window.as_millis_i64(), w.escalation_tier));
        Ok(View {
            consumer,
            state: Applier {
                kinds,
                decoder,
                store,
                telemetry,
                notifier,
                ready,
                remaining,
                deferred: Vec::new(),
                replay_window_ms,
                escalation_tier,
            },
        })
    }

    /// Applies records until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KafkaError> {
        let View { consumer, state: mut applier } = self;
        let mut last_record = Instant::now();
        let mut check = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                // Both branches are cancellation-safe: recv() loses no message when dropped.
                message = consumer.recv() => match message {
                    Ok(m) => {
                        applier.apply(&m);
                        last_record = Instant::now();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Reading the view's topics failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = check.tick() => {
                    if !applier.ready.load(Ordering::Relaxed)
                        && (applier.remaining.is_empty() || last_record.elapsed() >= LULL)
                    {
                        applier.caught_up();
                    }
                }
            }
        }
    }
}

impl Applier {
    fn caught_up(&mut self) {
        self.ready.store(true, Ordering::Relaxed);
        let now = crate::service::Clock::System.now_ms();
        let deferred = std::mem::take(&mut self.deferred);
        tracing::info!(unread = self.remaining.len(), announced = deferred.len(), "The review view has caught up.");
        for notice in deferred {
            // Only what is still waiting, and recent enough to be news.
            if now - notice.at <= self.replay_window_ms && self.store.case(&notice.event_id).is_some() {
                self.send(notice);
            }
        }
    }

    fn apply(&mut self, m: &BorrowedMessage<'_>) {
        let topic = m.topic();
        let Some(&kind) = self.kinds.get(topic) else { return };
        let key = (topic.to_owned(), m.partition());
        if let Some(&end) = self.remaining.get(&key) {
            if m.offset() + 1 >= end {
                self.remaining.remove(&key);
            }
        }
        let payload = m.payload().unwrap_or_default();
        let result = match kind {
            Kind::State if payload.is_empty() => match m.key().map(String::from_utf8_lossy) {
                // A tombstone: the key names the case.
                Some(event_id) if !event_id.is_empty() => {
                    self.store.apply_gate(&event_id, None);
                    Ok(Change::Nothing)
                }
                _ => Err("a case-state tombstone without a key".to_owned()),
            },
            Kind::State => records::case_gate(payload).and_then(|g| {
                if g.event_id.is_empty() {
                    return Err("a case state without an event id".to_owned());
                }
                let event_id = g.event_id.to_string();
                self.store.apply_gate(&event_id, Some(g));
                Ok(Change::Nothing)
            }),
            _ if payload.is_empty() => Err("the record has no value".to_owned()),
            Kind::Routed => self.decoder.routed(payload).map(|r| {
                let position = Position { topic: topic.to_owned(), partition: m.partition(), offset: m.offset() };
                self.store.apply_routed(r, position)
            }),
            Kind::Resolved => self.decoder.resolved(payload).map(|r| {
                self.store.apply_resolved(r);
                Change::Nothing
            }),
            Kind::Escalation => records::escalation(payload).map(|e| self.store.apply_escalation(&e)),
            Kind::Decision => records::decision(payload).map(|d| {
                self.store.apply_decision(&d);
                Change::Nothing
            }),
        };
        match result {
            Ok(change) => {
                self.telemetry.record(kind.label(), true);
                self.announce(change);
            }
            Err(why) => {
                self.telemetry.record(kind.label(), false);
                tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %why, "Skipping a record the gateway cannot read.");
            }
        }
    }

    fn announce(&mut self, change: Change) {
        if self.notifier.is_none() {
            return;
        }
        let notice = match change {
            Change::Opened { event_id, queue: tollgate_schemas::Route::SyncReview, at } => {
                Notice { trigger: Trigger::SyncReview, event_id, at, tier: 1 }
            }
            Change::Escalated { event_id, to_tier, at, .. } if to_tier >= self.escalation_tier => {
                Notice { trigger: Trigger::Escalation, event_id, at, tier: to_tier }
            }
            _ => return,
        };
        if self.ready.load(Ordering::Relaxed) {
            self.send(notice);
        } else if crate::service::Clock::System.now_ms() - notice.at <= self.replay_window_ms {
            self.deferred.push(notice);
        }
    }

    fn send(&self, notice: Notice) {
        if let (Some(n), Some(case)) = (&self.notifier, self.store.case(&notice.event_id)) {
            n.notify(notice, &case);
        }
    }
}
