//! The replay's tallies and report: figures per policy, per route, per queue and per score
//! band, as a table for people and JSON for tools.

use super::is_auto;
use serde::Serialize;
use std::fmt::Write;
use tollgate_schemas::{ReviewOutcome, Route};

/// Score bands: tenths of [0, 1].
const BANDS: usize = 10;

/// Figures of one score band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BandFigures {
    /// Lower bound of the band (the band is [low, low + 0.1); the last includes 1.0).
    pub low: f64,
    pub events: u64,
    /// Events sent to a review queue.
    pub reviewed: u64,
    /// Events decided without a person (auto-commit or auto-reject).
    pub auto: u64,
    /// Labelled events sent to review.
    pub labelled_reviewed: u64,
    /// Of those, the human outcome differed from the model's recommendation.
    pub overrides: u64,
    /// Labelled events decided automatically.
    pub labelled_auto: u64,
    /// Of those, the automatic outcome differed from the human label.
    pub auto_errors: u64,
}

/// Figures of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyFigures {
    pub policy_version: String,
    pub events: u64,
    pub dead_letters: u64,
    /// Events per route.
    pub routes: Vec<(String, u64)>,
    /// Share of routed events per route.
    pub shares: Vec<(String, f64)>,
    /// Expected events per hour per review queue (over the records' time span; absent when
    /// the span is unknown or zero).
    pub review_load_per_hour: Vec<(String, Option<f64>)>,
    pub labelled_reviewed: u64,
    /// Expected override rate: overrides over labelled reviewed events (absent without labels).
    pub override_rate: Option<f64>,
    pub auto_errors: u64,
    pub bands: Vec<BandFigures>,
    /// Per field: events whose decision tested a bound on it while it held something other
    /// than a number (the bound was false), as `tollgate_policy_bound_not_numeric_total` counts.
    pub bound_not_numeric: Vec<(String, u64)>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Hours between the first and last event's timestamp.
    pub span_hours: Option<f64>,
    /// Human outcomes read.
    pub labels: usize,
    pub current: PolicyFigures,
    pub candidate: PolicyFigures,
}

/// Running counts of one policy.
pub(super) struct Tally {
    version: String,
    routes: [u64; 4],
    dead_letters: u64,
    bands: [BandFigures; BANDS],
    not_numeric: Vec<(String, u64)>,
}

fn band_of(risk: f64) -> usize {
    ((risk.clamp(0.0, 1.0) * BANDS as f64) as usize).min(BANDS - 1)
}

fn route_index(route: Route) -> usize {
    Route::ALL.iter().position(|r| *r == route).unwrap_or(0)
}

impl Tally {
    pub(super) fn new(version: &str) -> Tally {
        let mut bands = [BandFigures::default(); BANDS];
        for (i, b) in bands.iter_mut().enumerate() {
            b.low = i as f64 / BANDS as f64;
        }
        Tally { version: version.to_owned(), routes: [0; 4], dead_letters: 0, bands, not_numeric: Vec::new() }
    }

    /// A routed event's decision met a bound on `field` holding something other than a number.
    pub(super) fn bound_not_numeric(&mut self, field: &str) {
        match self.not_numeric.iter_mut().find(|(f, _)| f == field) {
            Some((_, n)) => *n += 1,
            None => self.not_numeric.push((field.to_owned(), 1)),
        }
    }

    pub(super) fn routed(&mut self, route: Route, risk: f64, label: Option<ReviewOutcome>, recommends_reject: bool) {
        self.routes[route_index(route)] += 1;
        let band = &mut self.bands[band_of(risk)];
        band.events += 1;
        if is_auto(route) {
            band.auto += 1;
        } else {
            band.reviewed += 1;
        }
        let Some(label) = label else { return };
        let human_rejects = label == ReviewOutcome::Rejected;
        if is_auto(route) {
            band.labelled_auto += 1;
            let auto_rejects = route == Route::AutoReject;
            band.auto_errors += u64::from(auto_rejects != human_rejects);
        } else {
            band.labelled_reviewed += 1;
            band.overrides += u64::from(recommends_reject != human_rejects);
        }
    }

    pub(super) fn dead_letter(&mut self) {
        self.dead_letters += 1;
    }

    pub(super) fn figures(&self, span_hours: Option<f64>) -> PolicyFigures {
        let routed: u64 = self.routes.iter().sum();
        let labelled_reviewed: u64 = self.bands.iter().map(|b| b.labelled_reviewed).sum();
        let overrides: u64 = self.bands.iter().map(|b| b.overrides).sum();
        PolicyFigures {
            policy_version: self.version.clone(),
            events: routed + self.dead_letters,
            dead_letters: self.dead_letters,
            routes: Route::ALL.iter().map(|r| (r.as_str().to_owned(), self.routes[route_index(*r)])).collect(),
            shares: Route::ALL
                .iter()
                .map(|r| {
                    (
                        r.as_str().to_owned(),
                        if routed == 0 { 0.0 } else { self.routes[route_index(*r)] as f64 / routed as f64 },
                    )
                })
                .collect(),
            review_load_per_hour: [Route::SyncReview, Route::AsyncReview]
                .iter()
                .map(|q| (q.as_str().to_owned(), span_hours.map(|h| self.routes[route_index(*q)] as f64 / h)))
                .collect(),
            labelled_reviewed,
            override_rate: (labelled_reviewed > 0).then(|| overrides as f64 / labelled_reviewed as f64),
            auto_errors: self.bands.iter().map(|b| b.auto_errors).sum(),
            bands: self.bands.to_vec(),
            bound_not_numeric: self.not_numeric.clone(),
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "—".to_owned(), f)
}

impl ReplayReport {
    /// The side-by-side table.
    pub fn table(&self) -> String {
        let (c, n) = (&self.current, &self.candidate);
        let mut t = String::new();
        let span = opt(self.span_hours, |h| format!("{h:.2} h"));
        let _ = writeln!(t, "Replay of {} events over {span}, {} human outcomes as labels", c.events, self.labels);
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{:<34} {:>22} {:>22} {:>10}",
            "",
            format!("current {}", c.policy_version),
            format!("candidate {}", n.policy_version),
            "change"
        );
        for ((route, a), (_, b)) in c.shares.iter().zip(&n.shares) {
            let _ = writeln!(
                t,
                "{:<34} {:>22} {:>22} {:>10}",
                format!("share {route}"),
                pct(*a),
                pct(*b),
                format!("{:+.1} pp", (b - a) * 100.0)
            );
        }
        for ((queue, a), (_, b)) in c.review_load_per_hour.iter().zip(&n.review_load_per_hour) {
            let delta = match (a, b) {
                (Some(a), Some(b)) => format!("{:+.1}", b - a),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                t,
                "{:<34} {:>22} {:>22} {:>10}",
                format!("{queue} load per hour"),
                opt(*a, |x| format!("{x:.1}")),
                opt(*b, |x| format!("{x:.1}")),
                delta
            );
        }
        let _ =
            writeln!(t, "{:<34} {:>22} {:>22}", "labelled events reviewed", c.labelled_reviewed, n.labelled_reviewed);
        let rate_delta = match (c.override_rate, n.override_rate) {
            (Some(a), Some(b)) => format!("{:+.1} pp", (b - a) * 100.0),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            t,
            "{:<34} {:>22} {:>22} {:>10}",
            "expected override rate",
            opt(c.override_rate, pct),
            opt(n.override_rate, pct),
            rate_delta
        );
        let _ = writeln!(
            t,
            "{:<34} {:>22} {:>22} {:>10}",
            "auto errors (labelled)",
            c.auto_errors,
            n.auto_errors,
            format!("{:+}", n.auto_errors as i64 - c.auto_errors as i64)
        );
        let _ = writeln!(t, "{:<34} {:>22} {:>22}", "dead letters", c.dead_letters, n.dead_letters);
        let unmet = |f: &PolicyFigures| f.bound_not_numeric.iter().map(|(_, n)| n).sum::<u64>();
        let _ = writeln!(t, "{:<34} {:>22} {:>22}", "bounds met a non-number", unmet(c), unmet(n));
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "By risk band: events | reviewed / auto | labelled reviewed (overrides) | labelled auto (errors)"
        );
        for (a, b) in c.bands.iter().zip(&n.bands) {
            if a.events == 0 {
                continue;
            }
            let cell = |x: &BandFigures| {
                format!(
                    "{}/{} | {} ({}) | {} ({})",
                    x.reviewed, x.auto, x.labelled_reviewed, x.overrides, x.labelled_auto, x.auto_errors
                )
            };
            let _ = writeln!(
                t,
                "  [{:.1}, {:.1}) {:>5}   current {:<26} candidate {}",
                a.low,
                a.low + 0.1,
                a.events,
                cell(a),
                cell(b)
            );
        }
        t
    }
}
