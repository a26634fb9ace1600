//! The review join's metrics: decisions, resolutions, escalations, queue gauges.

use super::{names, Telemetry};
use crate::review::Outcome;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tollgate_schemas::{ReviewAction, Route};

/// Buckets of the review latency histogram (seconds): 10 s to 1 day.
const REVIEW_LATENCY_BUCKETS: &[f64] =
    &[10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 2700.0, 3600.0, 7200.0, 14400.0, 21600.0, 43200.0, 86400.0];

/// The review loop's metrics (labels: queue, outcome, tier, action, reason: all small sets).
#[derive(Clone)]
pub(super) struct ReviewMetrics {
    /// The series the join updates per decision, resolved once: by action
    /// ([`ReviewAction::ALL`] order), and by review queue ([`queue_index`]).
    by_action: [IntCounter; 4],
    by_queue: [QueueSeries; 2],
    escalations: IntCounterVec,
    unjoined: IntCounterVec,
    duplicates: IntCounter,
    pending: IntGaugeVec,
    oldest: GaugeVec,
    held: IntGaugeVec,
    sla_seconds: GaugeVec,
    event_cache: IntGauge,
}

impl ReviewMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        let decisions = IntCounterVec::new(
            Opts::new(names::REVIEW_DECISIONS, "Reviewer decisions consumed, by action."),
            &["action"],
        )
        .unwrap();
        let resolutions = IntCounterVec::new(
            Opts::new(
                names::REVIEW_RESOLUTIONS,
                "Reviews ended, by queue, outcome and whether the human overrode the model (timeouts: actor=policy_timeout).",
            ),
            &["queue", "outcome", "overridden", "actor"],
        )
        .unwrap();
        let latency = HistogramVec::new(
            HistogramOpts::new(names::REVIEW_LATENCY, "Time from routing to the review's end, by queue.")
                .buckets(REVIEW_LATENCY_BUCKETS.to_vec()),
            &["queue"],
        )
        .unwrap();
        let sla = IntCounterVec::new(
            Opts::new(names::REVIEW_SLA, "Reviews ended within (met) or after (breached) the queue's SLA."),
            &["queue", "result"],
        )
        .unwrap();
        // Every series exists from zero, so the first resolutions show as an increase: a series
        // born at its first value (say 30 resolutions in one scrape) has no rate().
        let by_action = ReviewAction::ALL.map(|a| decisions.with_label_values(&[a.as_str()]));
        let by_queue = REVIEW_QUEUES.map(|q| QueueSeries::new(q, &resolutions, &latency, &sla));
        let m = ReviewMetrics {
            by_action,
            by_queue,
            escalations: IntCounterVec::new(
                Opts::new(
                    names::REVIEW_ESCALATIONS,
                    "Escalations, by queue and tier reached (held: every tier ran out).",
                ),
                &["queue", "to_tier"],
            )
            .unwrap(),
            unjoined: IntCounterVec::new(
                Opts::new(names::REVIEW_UNJOINED, "Decisions sent to the dead-letter topic, by reason."),
                &["reason"],
            )
            .unwrap(),
            duplicates: IntCounter::new(names::REVIEW_DUPLICATES, "Repeated deliveries of decisions already applied.")
                .unwrap(),
            pending: IntGaugeVec::new(Opts::new(names::REVIEW_PENDING, "Reviews waiting, by queue."), &["queue"])
                .unwrap(),
            oldest: GaugeVec::new(
                Opts::new(names::REVIEW_OLDEST, "Age of the oldest waiting review, by queue."),
                &["queue"],
            )
            .unwrap(),
            held: IntGaugeVec::new(
                Opts::new(names::REVIEW_HELD, "Waiting reviews past their last tier (held), by queue."),
                &["queue"],
            )
            .unwrap(),
            sla_seconds: GaugeVec::new(
                Opts::new(names::REVIEW_SLA_SECONDS, "The queue's review SLA (its first tier), in seconds."),
                &["queue"],
            )
            .unwrap(),
            event_cache: IntGauge::new(
                names::REVIEW_EVENT_CACHE,
                "Memory held for the original events of pending reviews (bounded by review.event_cache_mib).",
            )
            .unwrap(),
        };
        for c in [
            Box::new(decisions) as Box<dyn prometheus::core::Collector>,
            Box::new(resolutions),
            Box::new(latency),
            Box::new(sla),
            Box::new(m.escalations.clone()),
            Box::new(m.unjoined.clone()),
            Box::new(m.duplicates.clone()),
            Box::new(m.pending.clone()),
            Box::new(m.oldest.clone()),
            Box::new(m.held.clone()),
            Box::new(m.event_cache.clone()),
            Box::new(m.sla_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for q in REVIEW_QUEUES {
            m.pending.with_label_values(&[q.as_str()]);
            m.oldest.with_label_values(&[q.as_str()]);
            m.held.with_label_values(&[q.as_str()]);
        }
        m
    }
}

/// The review queues, in [`queue_index`] order.
const REVIEW_QUEUES: [Route; 2] = [Route::SyncReview, Route::AsyncReview];

/// Where a review queue's series are in [`ReviewMetrics::by_queue`].
fn queue_index(queue: Route) -> usize {
    usize::from(queue != Route::SyncReview)
}

/// One review queue's resolution series.
#[derive(Clone)]
struct QueueSeries {
    latency: Histogram,
    /// Met, breached.
    sla: [IntCounter; 2],
    /// By outcome (approved, rejected), overridden (true, false) and actor (reviewer,
    /// policy_timeout): index `outcome * 4 + (1 - overridden) * 2 + by_timeout`.
    resolutions: [IntCounter; 8],
}

impl QueueSeries {
    fn new(queue: Route, resolutions: &IntCounterVec, latency: &HistogramVec, sla: &IntCounterVec) -> Self {
        let q = queue.as_str();
        QueueSeries {
            latency: latency.with_label_values(&[q]),
            sla: ["met", "breached"].map(|result| sla.with_label_values(&[q, result])),
            resolutions: std::array::from_fn(|i| {
                let outcome = [Outcome::Approved, Outcome::Rejected][i / 4].as_str();
                let overridden = ["true", "false"][i / 2 % 2];
                let actor = ["reviewer", "policy_timeout"][i % 2];
                resolutions.with_label_values(&[q, outcome, overridden, actor])
            }),
        }
    }
}

impl Telemetry {
    /// A reviewer's decision was consumed.
    pub fn review_decision(&self, action: ReviewAction) {
        self.review.by_action[action as usize].inc();
    }

    /// Reviewer decisions consumed so far, every action.
    pub fn review_decisions_count(&self) -> u64 {
        self.review.by_action.iter().map(IntCounter::get).sum()
    }

    /// A review ended.
    pub fn review_resolved(
        &self,
        queue: Route,
        outcome: Outcome,
        overridden: bool,
        by_timeout: bool,
        latency_ms: i64,
        sla_met: bool,
    ) {
        let series = &self.review.by_queue[queue_index(queue)];
        let outcome = usize::from(outcome == Outcome::Rejected);
        series.resolutions[outcome * 4 + usize::from(!overridden) * 2 + usize::from(by_timeout)].inc();
        series.latency.observe(latency_ms.max(0) as f64 / 1000.0);
        series.sla[usize::from(!sla_met)].inc();
    }

    /// A review moved up a tier (`to_tier` is "held" when every tier ran out).
    pub fn review_escalated(&self, queue: Route, to_tier: &str) {
        self.review.escalations.with_label_values(&[queue.as_str(), to_tier]).inc();
    }

    /// A decision could not be joined and was dead-lettered.
    pub fn review_unjoined(&self, reason: &str, event_id: &str) {
        self.review.unjoined.with_label_values(&[reason]).inc();
        tracing::warn!(reason, event_id, "Sent a review decision to the dead-letter topic.");
    }

    /// A decision was delivered again.
    pub fn review_duplicate(&self) {
        self.review.duplicates.inc();
    }

    /// Waiting reviews of a queue, how many are held, and the age of the oldest.
    pub fn review_queue(&self, queue: Route, stats: crate::review::QueueStats) {
        let q = queue.as_str();
        self.review.pending.with_label_values(&[q]).set(i64::try_from(stats.pending).unwrap_or(i64::MAX));
        self.review.held.with_label_values(&[q]).set(i64::try_from(stats.held).unwrap_or(i64::MAX));
        self.review.oldest.with_label_values(&[q]).set(stats.oldest_ms.max(0) as f64 / 1000.0);
    }

    /// Bytes held for the original events of pending reviews.
    pub fn review_event_cache(&self, bytes: usize) {
        self.review.event_cache.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The configured SLA of a review queue.
    pub fn review_sla(&self, queue: Route, sla_ms: i64) {
        self.review.sla_seconds.with_label_values(&[queue.as_str()]).set(sla_ms.max(0) as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the series with exactly these labels in the exposition text.
    fn series(text: &str, name: &str, labels: &str) -> f64 {
        let prefix = format!("{name}{{{labels}}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{prefix} in:\n{text}"));
        line[prefix.len()..].parse().unwrap()
    }

    #[test]
    fn each_resolution_counts_on_the_series_its_labels_name() {
        let t = Telemetry::new();
        let mut expected = Vec::new();
        // Every combination once, the n-th one n + 1 times, so a series counted under the
        // wrong labels shows a wrong count.
        let mut n = 0;
        for queue in REVIEW_QUEUES {
            for outcome in [Outcome::Approved, Outcome::Rejected] {
                for overridden in [true, false] {
                    for by_timeout in [true, false] {
                        n += 1;
                        for _ in 0..n {
                            t.review_resolved(queue, outcome, overridden, by_timeout, 20_000, by_timeout);
                        }
                        let actor = if by_timeout { "policy_timeout" } else { "reviewer" };
                        let labels = format!(
                            r#"actor="{actor}",outcome="{}",overridden="{overridden}",queue="{}""#,
                            outcome.as_str(),
                            queue.as_str()
                        );
                        expected.push((labels, n));
                    }
                }
            }
        }
        for action in ReviewAction::ALL {
            for _ in 0..=(action as usize) {
                t.review_decision(action);
            }
        }
        let text = t.render();
        for (labels, n) in expected {
            assert_eq!(series(&text, names::REVIEW_RESOLUTIONS, &labels), f64::from(n), "{labels}");
        }
        // Above, the SLA was met exactly by the timeouts: n = 1, 3, 5, 7 in the first queue,
        // 9, 11, 13, 15 in the second.
        for (queue, met, breached) in [("sync_review", 16.0, 20.0), ("async_review", 48.0, 52.0)] {
            assert_eq!(series(&text, names::REVIEW_SLA, &format!(r#"queue="{queue}",result="met""#)), met);
            assert_eq!(series(&text, names::REVIEW_SLA, &format!(r#"queue="{queue}",result="breached""#)), breached);
            assert_eq!(
                series(&text, &format!("{}_count", names::REVIEW_LATENCY), &format!(r#"queue="{queue}""#)),
                met + breached
            );
        }
        for action in ReviewAction::ALL {
            let labels = format!(r#"action="{}""#, action.as_str());
            assert_eq!(series(&text, names::REVIEW_DECISIONS, &labels), (action as usize + 1) as f64);
        }
        assert_eq!(t.review_decisions_count(), 10);
    }
}
