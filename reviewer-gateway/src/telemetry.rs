//! Every metric the gateway exports, and the events that update them. Labels come from small
//! fixed sets: endpoint templates (never raw paths), error codes, actions, queues.

use crate::store::QueueStats;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::time::Duration;
use tollgate_common::kafka::LoggingContext;
use tollgate_schemas::Route;

/// Metric names, in one place for the dashboards and alert rules to match.
/// The kinds of `tollgate_gateway_write_failures_total`: reviewer actions whose transaction
/// failed, those whose commit Kafka did not confirm in time (they may have been recorded), and
/// the audit records of reads.
pub const WRITE_KINDS: [&str; 3] = ["transaction", "unconfirmed_transaction", "audit"];

pub mod names {
    pub const REQUESTS: &str = "tollgate_gateway_requests_total";
    pub const REQUEST_DURATION: &str = "tollgate_gateway_request_duration_seconds";
    pub const ERRORS: &str = "tollgate_gateway_errors_total";
    pub const AUTH_FAILURES: &str = "tollgate_gateway_auth_failures_total";
    pub const ACTIONS: &str = "tollgate_gateway_actions_total";
    pub const AUDIT_RECORDS: &str = "tollgate_gateway_audit_records_total";
    pub const WRITE_FAILURES: &str = "tollgate_gateway_write_failures_total";
    pub const KAFKA_ERRORS: &str = "tollgate_gateway_kafka_errors_total";
    pub const RECORDS: &str = "tollgate_gateway_records_total";
    pub const CASES: &str = "tollgate_gateway_cases";
    pub const OLDEST_CASE: &str = "tollgate_gateway_oldest_case_seconds";
    pub const WEBHOOK: &str = "tollgate_gateway_webhook_notifications_total";
    pub const WEBHOOK_RETRIES: &str = "tollgate_gateway_webhook_retries_total";
    pub const READY: &str = "tollgate_gateway_ready";
}

const DURATION_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The gateway's metrics.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    auth_failures: IntCounterVec,
    actions: IntCounterVec,
    audit_records: IntCounterVec,
    write_failures: IntCounterVec,
    records: IntCounterVec,
    cases: IntGaugeVec,
    oldest: GaugeVec,
    webhook: IntCounterVec,
    webhook_retries: IntCounter,
    kafka_errors: IntCounter,
    ready: IntGauge,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

impl Telemetry {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let duration = HistogramVec::new(
            HistogramOpts::new(names::REQUEST_DURATION, "API request duration, by endpoint.")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["endpoint"],
        )
        .expect("valid metric");
        r.register(Box::new(duration.clone())).expect("metric registered once");
        let cases = IntGaugeVec::new(
            Opts::new(names::CASES, "Cases waiting for reviewers, by queue and state."),
            &["queue", "state"],
        )
        .expect("valid metric");
        r.register(Box::new(cases.clone())).expect("metric registered once");
        let oldest = GaugeVec::new(
            Opts::new(names::OLDEST_CASE, "Age of the oldest case waiting for a reviewer, by queue."),
            &["queue"],
        )
        .expect("valid metric");
        r.register(Box::new(oldest.clone())).expect("metric registered once");
        let webhook_retries = IntCounter::new(names::WEBHOOK_RETRIES, "Webhook calls retried.").expect("valid metric");
        r.register(Box::new(webhook_retries.clone())).expect("metric registered once");
        let kafka_errors =
            IntCounter::new(names::KAFKA_ERRORS, "Errors reported by the Kafka client (usually transient).")
                .expect("valid metric");
        r.register(Box::new(kafka_errors.clone())).expect("metric registered once");
        let ready = IntGauge::new(
            names::READY,
            "1 while the gateway can serve: its view has caught up with Kafka, and a broker answers.",
        )
        .expect("valid");
        r.register(Box::new(ready.clone())).expect("metric registered once");
        let t = Telemetry {
            requests: counter(
                r,
                names::REQUESTS,
                "API requests, by endpoint, method and status.",
                &["endpoint", "method", "status"],
            ),
            errors: counter(r, names::ERRORS, "Refused or failed API requests, by error code.", &["code"]),
            auth_failures: counter(r, names::AUTH_FAILURES, "Requests that failed authentication.", &["reason"]),
            actions: counter(
                r,
                names::ACTIONS,
                "Reviewer actions taken, by action and outcome.",
                &["action", "outcome"],
            ),
            audit_records: counter(r, names::AUDIT_RECORDS, "Audit records written, by action.", &["action"]),
            write_failures: counter(r, names::WRITE_FAILURES, "Kafka writes that failed, by kind.", &["kind"]),
            records: counter(
                r,
                names::RECORDS,
                "Kafka records read into the view, by kind and outcome.",
                &["kind", "outcome"],
            ),
            webhook: counter(
                r,
                names::WEBHOOK,
                "Webhook notifications, by trigger and outcome.",
                &["trigger", "outcome"],
            ),
            registry,
            duration,
            cases,
            oldest,
            webhook_retries,
            kafka_errors,
            ready,
        };
        // Pre-register the series dashboards and alerts expect to exist from the start.
        for q in [Route::SyncReview, Route::AsyncReview] {
            for s in ["open", "claimed", "awaiting_signoff"] {
                t.cases.with_label_values(&[q.as_str(), s]).set(0);
            }
            t.oldest.with_label_values(&[q.as_str()]).set(0.0);
        }
        // From 0, so that an alert's `increase` sees the first failure.
        for kind in WRITE_KINDS {
            t.write_failures.with_label_values(&[kind]);
        }
        for outcome in ["sent", "failed", "dropped"] {
            for trigger in ["sync_review", "escalation"] {
                t.webhook.with_label_values(&[trigger, outcome]);
            }
        }
        t
    }

    pub fn request(&self, endpoint: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests.with_label_values(&[endpoint, method, &status.to_string()]).inc();
        self.duration.with_label_values(&[endpoint]).observe(elapsed.as_secs_f64());
    }

    pub fn error(&self, code: &str) {
        self.errors.with_label_values(&[code]).inc();
    }

    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub fn action(&self, action: &str, outcome: &str) {
        self.actions.with_label_values(&[action, outcome]).inc();
    }

    pub fn audited(&self, action: &str, n: usize) {
        self.audit_records.with_label_values(&[action]).inc_by(n as u64);
    }

    /// A write that failed: `kind` is one of [`WRITE_KINDS`].
    pub fn write_failed(&self, kind: &str) {
        self.write_failures.with_label_values(&[kind]).inc();
    }

    pub fn record(&self, kind: &str, ok: bool) {
        self.records.with_label_values(&[kind, if ok { "applied" } else { "malformed" }]).inc();
    }

    pub fn webhook(&self, trigger: &str, outcome: &str) {
        self.webhook.with_label_values(&[trigger, outcome]).inc();
    }

    pub fn webhook_retry(&self) {
        self.webhook_retries.inc();
    }

    /// An error the Kafka client reported on its own (a broker unreachable, a request timed
    /// out): counted and logged.
    pub fn kafka_error(&self, error: &dyn std::fmt::Display) {
        self.kafka_errors.inc();
        tracing::warn!(%error, "The Kafka client reported an error.");
    }

    /// A context for one of the gateway's Kafka clients: its logs go to `tracing`, its errors
    /// to [`Telemetry::kafka_error`].
    pub fn client_context(&self, client: &'static str) -> LoggingContext {
        let telemetry = self.clone();
        LoggingContext::with_hook(client, std::sync::Arc::new(move |error| telemetry.kafka_error(error)))
    }

    pub fn queues(&self, stats: &[(Route, QueueStats)], now: i64) {
        for (q, s) in stats {
            let q = q.as_str();
            self.cases.with_label_values(&[q, "open"]).set(s.open as i64);
            self.cases.with_label_values(&[q, "claimed"]).set(s.claimed as i64);
            self.cases.with_label_values(&[q, "awaiting_signoff"]).set(s.awaiting_signoff as i64);
            let age = s.oldest_routed_at.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
            self.oldest.with_label_values(&[q]).set(age);
        }
    }

    /// Set at each scrape of `/metrics`, from the predicate `/readyz` answers by.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    use rdkafka::ClientContext;

    /// Errors a Kafka client of the gateway reports on its own are counted.
    #[test]
    fn a_client_context_counts_the_errors_of_its_client() {
        let t = Telemetry::new();
        assert!(t.render().contains("tollgate_gateway_kafka_errors_total 0"), "{}", t.render());
        t.client_context("view consumer").error(KafkaError::Global(RDKafkaErrorCode::AllBrokersDown), "1/1 down");
        assert!(t.render().contains("tollgate_gateway_kafka_errors_total 1"), "{}", t.render());
    }

    #[test]
    fn write_failures_are_exported_from_zero() {
        let t = Telemetry::new();
        for kind in super::WRITE_KINDS {
            let line = format!(r#"tollgate_gateway_write_failures_total{{kind="{kind}"}} 0"#);
            assert!(t.render().contains(&line), "{line} missing from {}", t.render());
        }
        t.write_failed("audit");
        assert!(t.render().contains(r#"tollgate_gateway_write_failures_total{kind="audit"} 1"#));
    }
}
