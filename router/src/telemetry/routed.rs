//! A routing loop's per-event metrics, counted on its own thread and added to the shared ones
//! once per poll batch.
//!
//! Every routed event counts its route and observes its risk and confidence. On the shared
//! metrics that is an atomic add per counter and three per histogram, one of them a
//! compare-and-swap loop for the float sum; a loop that routes a batch of events at a time can
//! count them locally and add the batch's totals at once (the prometheus crate's local
//! metrics). A scrape sees them at most one poll batch late.

use super::Telemetry;
use prometheus::local::{LocalHistogram, LocalIntCounter};
use tollgate_schemas::Route;

/// One routing loop's counts since its last [`RoutedTally::flush`].
pub struct RoutedTally {
    events: [LocalIntCounter; 4],
    risk: LocalHistogram,
    confidence: LocalHistogram,
}

impl Telemetry {
    /// A tally for one routing loop's thread.
    pub fn routed_tally(&self) -> RoutedTally {
        RoutedTally {
            events: std::array::from_fn(|i| self.events[i].local()),
            risk: self.risk.local(),
            confidence: self.confidence.local(),
        }
    }
}

impl RoutedTally {
    /// An event was routed.
    #[inline]
    pub fn routed(&self, route: Route, risk: f64, confidence: f64) {
        self.events[route as usize].inc();
        self.risk.observe(risk);
        self.confidence.observe(confidence);
    }

    /// Adds the counts to the shared metrics, and starts again from zero.
    pub fn flush(&self) {
        for events in &self.events {
            events.flush();
        }
        self.risk.flush();
        self.confidence.flush();
    }
}

impl Drop for RoutedTally {
    /// A loop that stops between batches leaves nothing uncounted.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reach_the_shared_metrics_when_flushed() {
        let t = Telemetry::new();
        let tally = t.routed_tally();
        tally.routed(Route::SyncReview, 0.93, 0.7);
        tally.routed(Route::AutoCommit, 0.1, 0.99);
        let rendered = t.render();
        assert!(rendered.contains(r#"tollgate_events_total{route="sync_review"} 0"#), "{rendered}");
        tally.flush();
        let rendered = t.render();
        assert!(rendered.contains(r#"tollgate_events_total{route="sync_review"} 1"#), "{rendered}");
        assert!(rendered.contains(r#"tollgate_events_total{route="auto_commit"} 1"#), "{rendered}");
        assert!(rendered.contains("tollgate_risk_score_count 2"), "{rendered}");
        // Dropped, it flushes what it still holds.
        tally.routed(Route::SyncReview, 0.95, 0.6);
        drop(tally);
        assert!(t.render().contains(r#"tollgate_events_total{route="sync_review"} 2"#));
    }
}
