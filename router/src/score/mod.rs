//! The score stage: risk, confidence, model version and explanation for one event.
//!
//! Two scorers, selected by `scorer.kind`:
//! - `field`: an upstream model already scored the event; risk and confidence are read from it.
//! - `logistic`: a built-in logistic-regression model loaded from a model file.

mod field;
mod logistic;

use crate::fields::{EventFields, FieldValue};
use crate::reject::{RejectReason, Rejection};
use std::borrow::Cow;
use tollgate_schemas::{Contribution, ScoreTexts};

pub use field::FieldScorer;
pub use logistic::{LogisticModel, LogisticScorer, ModelError};

/// What a scorer says about one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Score<'a> {
    /// Probability-like risk in [0, 1]: higher is riskier.
    pub risk: f64,
    /// How sure the model is of its call, in [0, 1].
    pub confidence: f64,
    pub model_version: Cow<'a, str>,
    /// Top contributions, largest magnitude first (empty when the model gives none).
    pub explanation: Vec<Contribution<'a>>,
    /// Risk and confidence as a JSON input wrote them, when they were read from it.
    pub texts: ScoreTexts<'a>,
}

/// The configured scorer.
#[derive(Debug)]
pub enum Scorer {
    Field(FieldScorer),
    Logistic(LogisticScorer),
}

impl Scorer {
    /// Scores one event, with its explanation in `explanation` (emptied first): a vector kept
    /// from earlier events, so that scoring allocates none.
    pub fn score_into<'a>(
        &'a self,
        fields: &'a EventFields,
        explanation: Vec<Contribution<'a>>,
    ) -> Result<Score<'a>, Rejection> {
        match self {
            Scorer::Field(s) => s.score_into(fields, explanation),
            Scorer::Logistic(s) => s.score_into(fields, explanation),
        }
    }
}

/// Reads a number from a field, refusing missing, mistyped and non-finite values.
///
/// Inlined, with the refusal kept out of line: a scorer reads one per feature per event.
#[inline]
pub(crate) fn number(value: &FieldValue, what: &str) -> Result<f64, Rejection> {
    match value {
        FieldValue::Number(n) if n.is_finite() => Ok(*n),
        other => Err(not_a_number(other, what)),
    }
}

#[cold]
#[inline(never)]
fn not_a_number(value: &FieldValue, what: &str) -> Rejection {
    match value {
        FieldValue::Number(n) => Rejection::new(RejectReason::NonFiniteScore, format!("{what} is {n}")),
        FieldValue::Missing => Rejection::new(RejectReason::MissingField, format!("{what} is missing")),
        other => {
            Rejection::new(RejectReason::InvalidField, format!("{what} must be a number, found a {}", other.kind()))
        }
    }
}

/// Reads a probability-like value, refusing anything outside [0, 1].
pub(crate) fn unit_interval(value: &FieldValue, what: &str) -> Result<f64, Rejection> {
    let n = number(value, what)?;
    if (0.0..=1.0).contains(&n) {
        Ok(n)
    } else {
        Err(Rejection::new(RejectReason::ScoreOutOfRange, format!("{what} is {n}, outside [0, 1]")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_interval_checks() {
        assert_eq!(unit_interval(&FieldValue::Number(0.0), "risk").unwrap(), 0.0);
        assert_eq!(unit_interval(&FieldValue::Number(1.0), "risk").unwrap(), 1.0);
        let r = |v| unit_interval(&v, "risk").unwrap_err().reason;
        assert_eq!(r(FieldValue::Number(1.0001)), RejectReason::ScoreOutOfRange);
        assert_eq!(r(FieldValue::Number(-0.1)), RejectReason::ScoreOutOfRange);
        assert_eq!(r(FieldValue::Number(f64::NAN)), RejectReason::NonFiniteScore);
        assert_eq!(r(FieldValue::Number(f64::INFINITY)), RejectReason::NonFiniteScore);
        assert_eq!(r(FieldValue::Missing), RejectReason::MissingField);
        assert_eq!(r(FieldValue::Text("0.5".into())), RejectReason::InvalidField);
    }
}
