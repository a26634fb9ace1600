//! The `field` scorer: the event carries an upstream model's risk score and confidence.

use super::{unit_interval, Score};
use crate::fields::{EventFields, FieldId, FieldValue};
use crate::reject::{RejectReason, Rejection};
use std::borrow::Cow;
use tollgate_schemas::{Contribution, ScoreTexts};

/// Reads risk, confidence and model version from configured fields.
#[derive(Debug)]
pub struct FieldScorer {
    risk: FieldId,
    confidence: FieldId,
    model_version: Option<FieldId>,
    /// Used when `model_version` is not configured or the event lacks it.
    default_model_version: Option<String>,
}

impl FieldScorer {
    pub fn new(
        risk: FieldId,
        confidence: FieldId,
        model_version: Option<FieldId>,
        default_model_version: Option<String>,
    ) -> Self {
        FieldScorer { risk, confidence, model_version, default_model_version }
    }

    #[cfg(test)]
    pub(super) fn score<'a>(&'a self, fields: &'a EventFields) -> Result<Score<'a>, Rejection> {
        self.score_into(fields, Vec::new())
    }

    /// Scores one event from its fields, returning `explanation` emptied: this scorer explains
    /// nothing.
    pub(super) fn score_into<'a>(
        &'a self,
        fields: &'a EventFields,
        mut explanation: Vec<Contribution<'a>>,
    ) -> Result<Score<'a>, Rejection> {
        let risk = unit_interval(fields.get(self.risk), "risk score")?;
        let confidence = unit_interval(fields.get(self.confidence), "model confidence")?;
        let from_event = self.model_version.map(|id| fields.get(id));
        let model_version = match (from_event, &self.default_model_version) {
            (Some(FieldValue::Text(v)), _) if !v.is_empty() => Cow::Borrowed(v.as_ref()),
            (Some(FieldValue::Missing) | None, Some(default)) => Cow::Borrowed(default.as_str()),
            (Some(FieldValue::Missing) | None, None) => {
                return Err(Rejection::new(RejectReason::MissingField, "model version is missing"))
            }
            (Some(other), _) => {
                return Err(Rejection::new(
                    RejectReason::InvalidField,
                    format!("model version must be a non-empty string, found a {}", other.kind()),
                ))
            }
        };
        explanation.clear();
        let texts = ScoreTexts { risk: fields.number_text(self.risk), confidence: fields.number_text(self.confidence) };
        Ok(Score { risk, confidence, model_version, explanation, texts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(
        risk: FieldValue<'static>,
        conf: FieldValue<'static>,
        version: FieldValue<'static>,
    ) -> EventFields<'static> {
        EventFields::from_values(vec![risk, conf, version])
    }

    #[test]
    fn reads_scores_and_version() {
        let s = FieldScorer::new(FieldId(0), FieldId(1), Some(FieldId(2)), None);
        let f = fields(FieldValue::Number(0.3), FieldValue::Number(0.9), FieldValue::Text("m-7".into()));
        let score = s.score(&f).unwrap();
        assert_eq!((score.risk, score.confidence, score.model_version.as_ref()), (0.3, 0.9, "m-7"));
    }

    #[test]
    fn falls_back_to_the_default_version() {
        let s = FieldScorer::new(FieldId(0), FieldId(1), Some(FieldId(2)), Some("upstream".into()));
        let f = fields(FieldValue::Number(0.3), FieldValue::Number(0.9), FieldValue::Missing);
        assert_eq!(s.score(&f).unwrap().model_version, "upstream");
        let s = FieldScorer::new(FieldId(0), FieldId(1), Some(FieldId(2)), None);
        assert_eq!(s.score(&f).unwrap_err().reason, RejectReason::MissingField);
    }

    #[test]
    fn refuses_bad_scores() {
        let s = FieldScorer::new(FieldId(0), FieldId(1), None, Some("v".into()));
        let bad = fields(FieldValue::Number(1.5), FieldValue::Number(0.9), FieldValue::Missing);
        assert_eq!(s.score(&bad).unwrap_err().reason, RejectReason::ScoreOutOfRange);
        let bad = fields(FieldValue::Number(0.5), FieldValue::Missing, FieldValue::Missing);
        assert_eq!(s.score(&bad).unwrap_err().reason, RejectReason::MissingField);
    }
}
