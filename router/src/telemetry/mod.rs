//! Every metric the router exports, and the events that update them.
//!
//! Names follow Prometheus practice: counters end in `_total`, units are in the name, labels
//! come only from small fixed sets (route, reason, topic/partition of the input). Hot-path
//! events resolve their label children once, at start-up; a routing loop counts its per-event
//! ones on its own thread and adds them once per poll batch ([`RoutedTally`]).

mod governance;
mod review;
mod routed;

use crate::kafka::group::Member;
use crate::reject::RejectReason;
use governance::GovernanceMetrics;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use review::ReviewMetrics;
pub use routed::RoutedTally;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tollgate_schemas::Route;

/// Metric names, in one place for the dashboards and alert rules to match.
pub mod names {
    pub use super::governance::names::*;
    pub const EVENTS: &str = "tollgate_events_total";
    pub const DEAD_LETTERS: &str = "tollgate_dead_letter_total";
    pub const ROUTING_LATENCY: &str = "tollgate_routing_latency_seconds";
    pub const RISK_SCORE: &str = "tollgate_risk_score";
    pub const MODEL_CONFIDENCE: &str = "tollgate_model_confidence";
    pub const CONSUMER_LAG: &str = "tollgate_consumer_lag";
    pub const IN_FLIGHT: &str = "tollgate_in_flight_events";
    pub const DELIVERY_FAILURES: &str = "tollgate_delivery_failures_total";
    pub const KAFKA_ERRORS: &str = "tollgate_kafka_errors_total";
    pub const GROUP_UNSETTLED: &str = "tollgate_consumer_group_unsettled_total";
    pub const READY: &str = "tollgate_ready";
    pub const POLICY_INFO: &str = "tollgate_policy_info";
    pub const OFFSET_COMMITS: &str = "tollgate_offset_commits_total";
    pub const REVIEW_DECISIONS: &str = "tollgate_review_decisions_total";
    pub const REVIEW_RESOLUTIONS: &str = "tollgate_review_resolutions_total";
    pub const REVIEW_LATENCY: &str = "tollgate_review_latency_seconds";
    pub const REVIEW_SLA: &str = "tollgate_review_sla_total";
    pub const REVIEW_ESCALATIONS: &str = "tollgate_review_escalations_total";
    pub const REVIEW_UNJOINED: &str = "tollgate_review_unjoined_decisions_total";
    pub const REVIEW_DUPLICATES: &str = "tollgate_review_duplicate_decisions_total";
    pub const REVIEW_PENDING: &str = "tollgate_review_pending";
    pub const REVIEW_OLDEST: &str = "tollgate_review_oldest_pending_seconds";
    pub const REVIEW_HELD: &str = "tollgate_review_held";
    pub const REVIEW_SLA_SECONDS: &str = "tollgate_review_sla_seconds";
    pub const REVIEW_EVENT_CACHE: &str = "tollgate_review_event_cache_bytes";
    pub const DRIFT_PSI: &str = "tollgate_drift_psi";
    pub const TRANSACTIONS: &str = "tollgate_transactions_total";
    pub const CONFIDENCE_MEAN: &str = "tollgate_model_confidence_mean";
    pub const CONFIDENCE_BASELINE: &str = "tollgate_model_confidence_baseline";
}

/// Buckets of the routing latency histogram (seconds): 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The router's metrics.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    events: [IntCounter; 4],
    dead_letters: [IntCounter; RejectReason::ALL.len()],
    routing_latency: Histogram,
    risk: Histogram,
    confidence: Histogram,
    consumer_lag: IntGaugeVec,
    in_flight: IntGauge,
    delivery_failures: IntCounter,
    kafka_errors: IntCounter,
    group_unsettled: [IntCounter; Member::ALL.len()],
    ready: IntGauge,
    /// Routing loops started and ready (the router is ready when all are).
    loops: Arc<Mutex<LoopCount>>,
    policy_info: IntGaugeVec,
    offset_commits: IntCounterVec,
    review: ReviewMetrics,
    drift: GaugeVec,
    confidence_mean: prometheus::Gauge,
    confidence_baseline: prometheus::Gauge,
    transactions: IntCounterVec,
    governance: GovernanceMetrics,
}

/// Routing loops expected and ready.
#[derive(Debug)]
struct LoopCount {
    expected: usize,
    ready: usize,
}

fn unit_buckets() -> Vec<f64> {
    (1..=20).map(|i| f64::from(i) * 0.05).collect()
}

impl Telemetry {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let events_vec = IntCounterVec::new(Opts::new(names::EVENTS, "Events routed, by route."), &["route"]).unwrap();
        let events = Route::ALL.map(|r| events_vec.with_label_values(&[r.as_str()]));
        let dl_vec = IntCounterVec::new(
            Opts::new(names::DEAD_LETTERS, "Input records sent to the dead-letter topic, by reason."),
            &["reason"],
        )
        .unwrap();
        let dead_letters = RejectReason::ALL.map(|r| dl_vec.with_label_values(&[r.as_str()]));
        let routing_latency = Histogram::with_opts(
            HistogramOpts::new(
                names::ROUTING_LATENCY,
                "Time from the router receiving an event to the broker acknowledging its routed and audit records.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .unwrap();
        let risk = Histogram::with_opts(
            HistogramOpts::new(names::RISK_SCORE, "Risk scores of routed events.").buckets(unit_buckets()),
        )
        .unwrap();
        let confidence = Histogram::with_opts(
            HistogramOpts::new(names::MODEL_CONFIDENCE, "Model confidence of routed events.").buckets(unit_buckets()),
        )
        .unwrap();
        let consumer_lag = IntGaugeVec::new(
            Opts::new(names::CONSUMER_LAG, "Records behind the partition's high watermark, per input partition."),
            &["topic", "partition"],
        )
        .unwrap();
        let in_flight =
            IntGauge::new(names::IN_FLIGHT, "Events consumed whose output the broker has not yet acknowledged.")
                .unwrap();
        let delivery_failures = IntCounter::new(
            names::DELIVERY_FAILURES,
            "Records the producer could not deliver after its retries (an at-least-once routing loop stops without committing them; an exactly-once one aborts the transaction and reads the batch again). Records of a transaction being aborted are not counted.",
        )
        .unwrap();
        let kafka_errors =
            IntCounter::new(names::KAFKA_ERRORS, "Errors reported by the Kafka client (usually transient).").unwrap();
        let unsettled_vec = IntCounterVec::new(
            Opts::new(
                names::GROUP_UNSETTLED,
                "Times a consumer waited over a minute for its consumer group to settle (a join or rebalance that did not complete), by consumer.",
            ),
            &["consumer"],
        )
        .unwrap();
        let group_unsettled = Member::ALL.map(|m| unsettled_vec.with_label_values(&[m.as_str()]));
        let ready = IntGauge::new(
            names::READY,
            "1 while every routing loop holds an assignment of its consumer group (possibly empty), 0 while starting, joining, rebalancing or stopping.",
        )
        .unwrap();
        let policy_info = IntGaugeVec::new(
            Opts::new(names::POLICY_INFO, "The running policy version (value 1)."),
            &["policy_version"],
        )
        .unwrap();
        let offset_commits =
            IntCounterVec::new(Opts::new(names::OFFSET_COMMITS, "Offset commits, by result."), &["result"]).unwrap();
        for c in [
            Box::new(events_vec) as Box<dyn prometheus::core::Collector>,
            Box::new(dl_vec),
            Box::new(routing_latency.clone()),
            Box::new(risk.clone()),
            Box::new(confidence.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(in_flight.clone()),
            Box::new(delivery_failures.clone()),
            Box::new(kafka_errors.clone()),
            Box::new(unsettled_vec),
            Box::new(ready.clone()),
            Box::new(policy_info.clone()),
            Box::new(offset_commits.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for r in ["ok", "error"] {
            offset_commits.with_label_values(&[r]);
        }
        let review = ReviewMetrics::new(&registry);
        let drift = GaugeVec::new(
            Opts::new(
                names::DRIFT_PSI,
                "Population stability index of a score over the last drift window, against the baseline.",
            ),
            &["score"],
        )
        .unwrap();
        let confidence_mean =
            prometheus::Gauge::new(names::CONFIDENCE_MEAN, "Mean model confidence over the last drift window.")
                .unwrap();
        let confidence_baseline =
            prometheus::Gauge::new(names::CONFIDENCE_BASELINE, "Expected mean model confidence (configured).").unwrap();
        let transactions = IntCounterVec::new(
            Opts::new(
                names::TRANSACTIONS,
                "Routing transactions (exactly_once), by result: committed, aborted, or unended (an abort that failed; the loop started again).",
            ),
            &["result"],
        )
        .unwrap();
        // From zero, so that a rate over them (and the alert on stalled transactions) sees the
        // first abort.
        for result in ["committed", "aborted", "unended"] {
            transactions.with_label_values(&[result]);
        }
        for c in [
            Box::new(transactions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(drift.clone()),
            Box::new(confidence_mean.clone()),
            Box::new(confidence_baseline.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let governance = GovernanceMetrics::new(&registry);
        Telemetry {
            registry,
            events,
            dead_letters,
            routing_latency,
            risk,
            confidence,
            consumer_lag,
            in_flight,
            delivery_failures,
            kafka_errors,
            group_unsettled,
            ready,
            loops: Arc::new(Mutex::new(LoopCount { expected: 1, ready: 0 })),
            policy_info,
            offset_commits,
            review,
            drift,
            confidence_mean,
            confidence_baseline,
            transactions,
            governance,
        }
    }

    /// A routing transaction committed (`true`) or was aborted for a retry.
    pub fn transaction(&self, committed: bool, error: Option<&dyn std::fmt::Display>) {
        self.transactions.with_label_values(&[if committed { "committed" } else { "aborted" }]).inc();
        if let Some(e) = error {
            tracing::warn!(error = %e, "Aborted a routing transaction; the batch is retried.");
        }
    }

    /// An aborted routing transaction could not be ended (`error`): its loop starts again
    /// with a new transactional producer.
    pub fn transaction_unended(&self, error: &dyn std::fmt::Display) {
        self.transactions.with_label_values(&["unended"]).inc();
        tracing::warn!(%error, "An aborted routing transaction could not be ended; the routing loop starts again with a new transactional producer.");
    }

    /// `member` (a routing loop or the review join) waited `waited` for this process's audit
    /// chainer to be assigned its partitions, and it was (`assigned`), or the wait ran out.
    pub fn chainer_awaited(&self, member: Member, assigned: bool, waited: Duration) {
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        let consumer = member.as_str();
        if assigned {
            tracing::info!(consumer, waited_ms, "The audit chainer has its intake partitions: consuming.");
        } else {
            tracing::warn!(
                consumer,
                waited_ms,
                "The audit chainer has no assignment yet (processing.chainer_join_wait ran out, or the router \
                 is stopping): consuming, with audit records through the intake topic until it has."
            );
        }
    }

    /// A batch of audit records was chained and committed.
    pub fn audit_chained(&self, records: usize) {
        // The transaction first: whoever sees its records counted sees it counted too.
        self.governance.transactions.with_label_values(&["committed"]).inc();
        self.governance.chained.inc_by(records as u64);
    }

    /// `records` of a committed audit chain transaction were handed in process.
    pub fn audit_handed(&self, records: usize) {
        self.governance.handed.inc_by(records as u64);
    }

    /// `records` went to the intake topic: the chainer was too far behind to be handed them.
    pub fn audit_hand_off_behind(&self, records: usize) {
        self.governance.behind.inc_by(records as u64);
    }

    /// An audit chain transaction was aborted (the batch is retried).
    pub fn audit_transaction_aborted(&self, error: &dyn std::fmt::Display) {
        self.governance.transactions.with_label_values(&["aborted"]).inc();
        tracing::warn!(error = %error, "Aborted an audit chain transaction; the batch is retried.");
    }

    /// Audit records chained so far.
    pub fn audit_chained_count(&self) -> u64 {
        self.governance.chained.get()
    }

    /// The chainer holds `partitions` intake partitions now (after a rebalance).
    pub fn audit_chain_partitions_held(&self, partitions: usize) {
        self.governance.chain_partitions.set(partitions as i64);
    }

    /// The audit intake topic has `partitions` partitions, as the chainer's client knows it.
    pub fn audit_intake_partitions(&self, partitions: usize) {
        self.governance.intake_partitions.set(partitions as i64);
    }

    /// How many intake partitions this process's chainer holds.
    pub fn audit_chain_partitions(&self) -> i64 {
        self.governance.chain_partitions.get()
    }

    /// Of [`Telemetry::audit_chained_count`], the records handed in process; and the records
    /// sent through the intake because the chainer was behind.
    pub fn audit_hand_off_counts(&self) -> (u64, u64) {
        (self.governance.handed.get(), self.governance.behind.get())
    }

    /// Audit chain transactions committed so far.
    pub fn audit_transactions_committed(&self) -> u64 {
        self.governance.transactions.with_label_values(&["committed"]).get()
    }

    /// An intake record was not an audit record.
    pub fn audit_intake_rejected(&self) {
        self.governance.intake_rejected.inc();
    }

    /// A policy reload was applied or refused.
    pub fn policy_reload(&self, applied: bool) {
        self.governance.reloads.with_label_values(&[if applied { "applied" } else { "refused" }]).inc();
    }

    /// A policy bound was tested on `field`, which held something other than a number.
    pub fn policy_bound_not_numeric(&self, field: &str) {
        self.governance.not_numeric.with_label_values(&[field]).inc();
    }

    /// A drift window completed.
    pub fn drift_measured(&self, reading: crate::drift::DriftReading) {
        self.drift.with_label_values(&["risk"]).set(reading.psi);
        self.confidence_mean.set(reading.confidence_mean);
        tracing::debug!(psi = reading.psi, confidence_mean = reading.confidence_mean, "Drift window measured.");
    }

    /// The configured confidence baseline.
    pub fn set_confidence_baseline(&self, mean: f64) {
        self.confidence_baseline.set(mean);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// An input record was dead-lettered.
    pub fn dead_lettered(&self, reason: RejectReason, message: &str) {
        self.dead_letters[reason.index()].inc();
        tracing::debug!(reason = reason.as_str(), message, "Sent a record to the dead-letter topic.");
    }

    /// The broker acknowledged every record of a batch of `events` input events.
    pub fn batch_acknowledged(&self, events: usize, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        // One observation per event, all of the same value: counted locally, then added at
        // once (three atomic adds per event otherwise, one a compare-and-swap loop).
        let local = self.routing_latency.local();
        for _ in 0..events {
            local.observe(secs);
        }
        local.flush();
    }

    /// The producer gave up on a record. A record purged by an aborted transaction is not a
    /// failure to deliver (the abort is counted and logged once, and its batch retried): it is
    /// logged at debug level only, not once per record at error level.
    pub fn delivery_failed(&self, topic: &str, error: &KafkaError) {
        if is_purged(error) {
            self.aborted_record(topic, error);
            return;
        }
        self.delivery_failures.inc();
        tracing::error!(topic, %error, "The broker did not accept a record after retries.");
    }

    /// The producer gave up on a record of a transaction being aborted: the abort is counted
    /// and logged once, and its batch read again.
    pub fn aborted_record(&self, topic: &str, error: &KafkaError) {
        tracing::debug!(topic, %error, "A record of an aborted transaction was not delivered.");
    }

    /// The Kafka client reported an error.
    pub fn kafka_error(&self, error: &dyn std::fmt::Display) {
        self.kafka_errors.inc();
        tracing::warn!(%error, "The Kafka client reported an error.");
    }

    /// A context for a client of the router with no callbacks of its own: its logs go to
    /// `tracing`, its errors to [`Telemetry::kafka_error`].
    pub fn client_context(&self, client: &'static str) -> tollgate_common::kafka::LoggingContext {
        let telemetry = self.clone();
        tollgate_common::kafka::LoggingContext::with_hook(client, Arc::new(move |error| telemetry.kafka_error(error)))
    }

    /// A consumer's group has not settled for `waited`: it reads nothing until it does.
    pub fn group_unsettled(&self, member: Member, waited: Duration, group: &rdkafka::statistics::ConsumerGroup) {
        self.group_unsettled[member as usize].inc();
        tracing::warn!(
            consumer = member.as_str(),
            waited_s = waited.as_secs(),
            state = %group.state,
            join_state = %group.join_state,
            rebalances = group.rebalance_cnt,
            last_rebalance_reason = %group.rebalance_reason,
            "The consumer's group has not settled: it reads nothing until its join or rebalance completes \
             (a member that does not rejoin holds it up to its max.poll.interval.ms, and a join the \
             coordinator does not answer is asked again after max.poll.interval.ms + 3 s)."
        );
    }

    /// A consumer's group settled after an unsettled time that was reported.
    pub fn group_settled(&self, member: Member, waited: Duration, assigned: i32) {
        tracing::info!(
            consumer = member.as_str(),
            waited_s = waited.as_secs(),
            assigned,
            "The consumer's group settled."
        );
    }

    /// One routing loop's events in flight went from `from` to `to` (the gauge is the sum over
    /// the loops).
    pub fn in_flight_moved(&self, from: usize, to: usize) {
        let signed = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.in_flight.add(signed(to) - signed(from));
    }

    /// Consumer lag of one input partition, from the client's statistics.
    pub fn set_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(lag);
    }

    /// How many routing loops the router runs: it is ready while all of them are.
    pub fn expect_routing_loops(&self, n: usize) {
        self.count_loops(|c| c.expected = n);
    }

    /// A routing loop became ready (its group assigned it partitions, possibly none) or stopped
    /// being ready (a revocation, or leaving the group).
    pub fn routing_loop_ready(&self, ready: bool) {
        self.count_loops(|c| c.ready = if ready { c.ready + 1 } else { c.ready.saturating_sub(1) });
    }

    /// Changes the loop count and sets the ready gauge from it, under one lock (two loops
    /// becoming ready at once must not leave the gauge at 0).
    fn count_loops(&self, change: impl FnOnce(&mut LoopCount)) {
        let mut count = self.loops.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut count);
        self.ready.set(i64::from(count.ready > 0 && count.ready >= count.expected));
    }

    /// True while the router is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.get() == 1
    }

    /// The running policy.
    ///
    /// Each field its bounds test gets its series of
    /// `tollgate_policy_bound_not_numeric_total`, at zero until counted: a series that first
    /// appears at 1 shows no `increase()`, so its first events would not alert.
    pub fn policy_loaded<'f>(&self, version: &str, bounded_fields: impl IntoIterator<Item = &'f str>) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[version]).set(1);
        for field in bounded_fields {
            self.governance.not_numeric.with_label_values(&[field]);
        }
        tracing::info!(policy_version = version, "Routing policy loaded.");
    }

    /// An offset commit finished.
    pub fn offsets_committed(&self, result: Result<(), &dyn std::fmt::Display>) {
        match result {
            Ok(()) => self.offset_commits.with_label_values(&["ok"]).inc(),
            Err(e) => {
                self.offset_commits.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "Committing consumer offsets failed.");
            }
        }
    }

    /// Events routed so far on `route`.
    pub fn routed_count(&self, route: Route) -> u64 {
        self.events[route as usize].get()
    }

    /// Dead letters so far, all reasons.
    pub fn dead_letter_count(&self) -> u64 {
        self.dead_letters.iter().map(IntCounter::get).sum()
    }

    /// Estimated quantile `q` of the routing latency since start, by linear interpolation
    /// within histogram buckets (as PromQL's `histogram_quantile`). `None` before any sample.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        use prometheus::core::Metric;
        let proto = self.routing_latency.metric();
        let h = proto.get_histogram();
        let total = h.get_sample_count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let (mut prev_bound, mut prev_count) = (0.0, 0u64);
        for b in h.get_bucket() {
            let count = b.cumulative_count();
            if count as f64 >= rank {
                let in_bucket = (count - prev_count).max(1) as f64;
                let frac = (rank - prev_count as f64) / in_bucket;
                return Some(Duration::from_secs_f64(prev_bound + (b.upper_bound() - prev_bound) * frac));
            }
            (prev_bound, prev_count) = (b.upper_bound(), count);
        }
        Some(Duration::from_secs_f64(prev_bound))
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a delivery error is the producer purging the record (an aborted transaction, or
/// a purge at close), not the broker refusing it.
fn is_purged(error: &KafkaError) -> bool {
    matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records an aborted transaction purged are not counted as failed deliveries; a record the
    /// broker refused is.
    #[test]
    fn purged_records_are_not_delivery_failures() {
        let t = Telemetry::new();
        let failures = |t: &Telemetry| {
            let text = t.render();
            let line = text.lines().find(|l| l.starts_with(names::DELIVERY_FAILURES)).map(str::to_owned);
            line.and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        };
        for code in [RDKafkaErrorCode::PurgeQueue, RDKafkaErrorCode::PurgeInflight] {
            t.delivery_failed("audit", &KafkaError::MessageProduction(code));
        }
        assert_eq!(failures(&t).as_deref(), Some("0"));
        t.delivery_failed("audit", &KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge));
        assert_eq!(failures(&t).as_deref(), Some("1"));
    }

    #[test]
    fn exposition_lists_every_documented_metric() {
        let t = Telemetry::new();
        t.routed_tally().routed(Route::SyncReview, 0.93, 0.7);
        t.dead_lettered(RejectReason::MalformedJson, "bad");
        t.set_consumer_lag("payments", 0, 5);
        t.policy_loaded("v1", ["amount", "attrs.velocity"]);
        t.policy_bound_not_numeric("amount");
        let text = t.render();
        for name in [
            names::EVENTS,
            names::DEAD_LETTERS,
            names::ROUTING_LATENCY,
            names::RISK_SCORE,
            names::MODEL_CONFIDENCE,
            names::CONSUMER_LAG,
            names::IN_FLIGHT,
            names::DELIVERY_FAILURES,
            names::KAFKA_ERRORS,
            names::GROUP_UNSETTLED,
            names::READY,
            names::POLICY_INFO,
            names::OFFSET_COMMITS,
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains(r#"tollgate_events_total{route="sync_review"} 1"#), "{text}");
        assert!(text.contains(r#"tollgate_events_total{route="auto_commit"} 0"#), "{text}");
        assert!(text.contains(r#"tollgate_dead_letter_total{reason="malformed_json"} 1"#), "{text}");
        assert!(text.contains(r#"tollgate_consumer_lag{partition="0",topic="payments"} 5"#), "{text}");
        assert!(text.contains(r#"tollgate_policy_bound_not_numeric_total{field="amount"} 1"#), "{text}");
        assert!(text.contains(r#"tollgate_policy_bound_not_numeric_total{field="attrs.velocity"} 0"#), "{text}");
        // Every consumer's series exists from the start, at zero.
        for consumer in ["routing", "review_join", "audit_chain"] {
            let series = format!(r#"tollgate_consumer_group_unsettled_total{{consumer="{consumer}"}} 0"#);
            assert!(text.contains(&series), "{series} missing from:\n{text}");
        }
    }

    /// Errors a client reports on its own (through a context from `client_context`) are
    /// counted.
    #[test]
    fn a_client_context_counts_the_errors_of_its_client() {
        use rdkafka::types::RDKafkaErrorCode;
        use rdkafka::ClientContext;
        let t = Telemetry::new();
        let context = t.client_context("review event lookup");
        context.error(rdkafka::error::KafkaError::Global(RDKafkaErrorCode::AllBrokersDown), "2/2 brokers are down");
        context.error(rdkafka::error::KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure), "refused");
        assert!(t.render().contains("tollgate_kafka_errors_total 2"), "{}", t.render());
    }

    #[test]
    fn latency_quantiles_interpolate_within_buckets() {
        let t = Telemetry::new();
        assert_eq!(t.latency_quantile(0.5), None);
        t.batch_acknowledged(100, Duration::from_micros(700));
        let p50 = t.latency_quantile(0.5).unwrap();
        assert!(p50 > Duration::from_micros(500) && p50 <= Duration::from_millis(1), "{p50:?}");
    }
}
