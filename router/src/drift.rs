//! Drift of the model's output against a baseline: the population stability index (PSI) of the
//! risk score over ten equal-width bins, and the mean confidence, per window of events.
//!
//! `PSI = Σ (actual_i − expected_i) · ln(actual_i / expected_i)` over the bins' shares. Usual
//! reading: under 0.1 stable, 0.1–0.25 moderate shift, above 0.25 significant shift.

use crate::config::DriftConfig;

/// Bins of the risk score: [0, 0.1), [0.1, 0.2), …, [0.9, 1].
pub const BINS: usize = 10;
/// Share given to an empty bin so the logarithm stays finite.
const FLOOR: f64 = 1e-4;

/// PSI of `actual` counts against `expected` shares.
pub fn psi(expected: &[f64; BINS], actual: &[u64; BINS]) -> f64 {
    let total: u64 = actual.iter().sum();
    if total == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let e = e.max(FLOOR);
            let a = (a as f64 / total as f64).max(FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The figures of one completed window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftReading {
    pub psi: f64,
    pub confidence_mean: f64,
}

/// Events observed by one routing loop since it last handed them to the window.
#[derive(Debug, Clone, Default)]
pub struct DriftTally {
    counts: [u64; BINS],
    seen: u64,
    confidence_sum: f64,
}

impl DriftTally {
    /// Adds one event.
    pub fn observe(&mut self, risk: f64, confidence: f64) {
        let bin = ((risk * BINS as f64) as usize).min(BINS - 1);
        self.counts[bin] += 1;
        self.seen += 1;
        self.confidence_sum += confidence;
    }

    /// Events observed.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// Accumulates one window of events, from tallies the routing loops hand over once per poll
/// batch (so that several loops feed one window without a lock per event). A window closes
/// with the tally that brings it to its size: it may hold up to a batch more.
#[derive(Debug)]
pub struct DriftWindow {
    baseline: [f64; BINS],
    size: u64,
    open: DriftTally,
}

impl DriftWindow {
    /// A window over `config`'s baseline (`None` without a baseline).
    pub fn new(config: &DriftConfig) -> Option<Self> {
        let b = config.baseline_risk.as_ref()?;
        let mut baseline = [0.0; BINS];
        baseline.copy_from_slice(b);
        Some(DriftWindow { baseline, size: config.window_events, open: DriftTally::default() })
    }

    /// Adds `tally` (left empty); returns the window's reading when this fills the window, which
    /// then starts over.
    pub fn absorb(&mut self, tally: &mut DriftTally) -> Option<DriftReading> {
        let t = std::mem::take(tally);
        for (sum, n) in self.open.counts.iter_mut().zip(t.counts) {
            *sum += n;
        }
        self.open.seen += t.seen;
        self.open.confidence_sum += t.confidence_sum;
        if self.open.seen < self.size {
            return None;
        }
        let full = std::mem::take(&mut self.open);
        Some(DriftReading {
            psi: psi(&self.baseline, &full.counts),
            confidence_mean: full.confidence_sum / full.seen as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(window: u64) -> DriftConfig {
        DriftConfig { baseline_risk: Some(vec![0.1; BINS]), baseline_confidence_mean: Some(0.9), window_events: window }
    }

    #[test]
    fn psi_is_zero_for_the_baseline_and_grows_with_the_shift() {
        let expected = [0.1; BINS];
        assert!(psi(&expected, &[100; BINS]).abs() < 1e-12);
        let mut shifted = [100u64; BINS];
        shifted[9] = 400;
        shifted[0] = 10;
        let moderate = psi(&expected, &shifted);
        let mut all_high = [0u64; BINS];
        all_high[9] = 1000;
        let severe = psi(&expected, &all_high);
        assert!(moderate > 0.1 && moderate < severe, "{moderate} {severe}");
        // By hand: 9 bins at the floor share and one at 1.0.
        let by_hand = 9.0 * (1e-4 - 0.1) * (1e-4f64 / 0.1).ln() + (1.0 - 0.1) * (1.0f64 / 0.1).ln();
        assert!((severe - by_hand).abs() < 1e-9);
        assert_eq!(psi(&expected, &[0; BINS]), 0.0);
    }

    fn observe(w: &mut DriftWindow, risk: f64, confidence: f64) -> Option<DriftReading> {
        let mut t = DriftTally::default();
        t.observe(risk, confidence);
        w.absorb(&mut t)
    }

    #[test]
    fn a_window_reports_once_full_then_starts_over() {
        let mut w = DriftWindow::new(&config(4)).unwrap();
        assert_eq!(observe(&mut w, 0.05, 0.9), None);
        assert_eq!(observe(&mut w, 0.15, 0.8), None);
        assert_eq!(observe(&mut w, 1.0, 0.7), None, "risk 1.0 falls in the last bin");
        let r = observe(&mut w, 0.55, 0.6).unwrap();
        assert!((r.confidence_mean - 0.75).abs() < 1e-12);
        assert!(r.psi > 0.0);
        assert_eq!(observe(&mut w, 0.5, 0.5), None, "a new window");
        assert!(DriftWindow::new(&DriftConfig::default()).is_none());
    }

    #[test]
    fn tallies_of_several_loops_make_one_window_closed_by_the_tally_that_fills_it() {
        let mut w = DriftWindow::new(&config(5)).unwrap();
        let (mut a, mut b) = (DriftTally::default(), DriftTally::default());
        for _ in 0..3 {
            a.observe(0.95, 1.0);
        }
        assert_eq!(w.absorb(&mut a), None);
        assert_eq!(a.seen(), 0, "an absorbed tally starts over");
        for _ in 0..3 {
            b.observe(0.95, 0.5);
        }
        // Six events in a window of five: the second tally closes it, whole.
        let r = w.absorb(&mut b).unwrap();
        assert!((r.confidence_mean - 0.75).abs() < 1e-12, "{r:?}");
        let mut one_bin = [0u64; BINS];
        one_bin[9] = 6;
        assert!((r.psi - psi(&[0.1; BINS], &one_bin)).abs() < 1e-12, "{r:?}");
        assert_eq!(w.absorb(&mut DriftTally::default()), None, "the next window starts empty");
    }
}
