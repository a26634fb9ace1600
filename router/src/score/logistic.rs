//! The `logistic` scorer: a built-in logistic-regression model read from a TOML model file.
//!
//! `z = intercept + Σ weight·(transform(x) − center)/scale + Σ weight[category]`,
//! `risk = 1 / (1 + e^−z)` (the model's probability that the event is bad), and
//! `confidence = max(risk, 1 − risk)`: the probability the model gives to the class it predicts,
//! so 0.5 means "cannot tell" and 1.0 means "certain". The explanation is the three features
//! with the largest |contribution| to `z`.

use super::{number, Score};
use crate::fields::{EventFields, FieldId, FieldRegistry, FieldValue};
use crate::reject::{RejectReason, Rejection};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use tollgate_schemas::{Contribution, ScoreTexts};

/// How many contributions an explanation lists.
pub const EXPLANATION_SIZE: usize = 3;

/// Errors in a model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file is not valid TOML for a logistic model: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("model feature `{feature}`: {problem}")]
    Feature { feature: String, problem: String },
    #[error("model has no features")]
    Empty,
}

/// A logistic model as written in its model file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogisticModel {
    /// Model version, stamped on every output.
    pub version: String,
    /// Bias term.
    #[serde(default)]
    pub intercept: f64,
    /// Numeric features.
    #[serde(default)]
    pub numeric: Vec<NumericFeature>,
    /// One-hot categorical features.
    #[serde(default)]
    pub categorical: Vec<CategoricalFeature>,
}

/// A numeric feature: `weight · (transform(x) − center) / scale`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericFeature {
    /// Feature name shown in explanations.
    pub name: String,
    /// Event field path; defaults to `name`.
    pub field: Option<String>,
    pub weight: f64,
    #[serde(default)]
    pub transform: Transform,
    #[serde(default)]
    pub center: f64,
    #[serde(default = "one")]
    pub scale: f64,
    /// When the field is absent: `reject` (dead letter) or `impute` (use `center`: no contribution).
    #[serde(default)]
    pub missing: Missing,
}

fn one() -> f64 {
    1.0
}

/// A categorical feature: one weight per known category, `other` for the rest (and for absence).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalFeature {
    pub name: String,
    pub field: Option<String>,
    pub weights: BTreeMap<String, f64>,
    #[serde(default)]
    pub other: f64,
}

/// Transform applied to a numeric feature before centering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    #[default]
    None,
    /// `ln(1 + x)`, for heavy-tailed amounts (negative inputs are clamped to 0).
    Log1p,
}

/// What to do with an absent numeric feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    #[default]
    Reject,
    Impute,
}

impl LogisticModel {
    /// Parses a model file.
    pub fn from_toml(text: &str) -> Result<Self, ModelError> {
        Ok(toml::from_str(text)?)
    }
}

#[derive(Debug)]
struct Numeric {
    label: String,
    field: FieldId,
    weight: f64,
    transform: Transform,
    center: f64,
    scale: f64,
    missing: Missing,
}

#[derive(Debug)]
struct Categorical {
    field: FieldId,
    /// (category, weight, explanation label `name=category`)
    weights: Vec<(String, f64, String)>,
    other: f64,
    other_label: String,
}

/// A compiled logistic model.
#[derive(Debug)]
pub struct LogisticScorer {
    version: String,
    intercept: f64,
    numeric: Vec<Numeric>,
    categorical: Vec<Categorical>,
}

impl LogisticScorer {
    /// Validates the model and registers the fields it reads.
    pub fn compile(model: LogisticModel, registry: &mut FieldRegistry) -> Result<Self, ModelError> {
        if model.numeric.is_empty() && model.categorical.is_empty() {
            return Err(ModelError::Empty);
        }
        let bad = |feature: &str, problem: String| ModelError::Feature { feature: feature.to_owned(), problem };
        if !model.intercept.is_finite() {
            return Err(bad("intercept", "must be a finite number".into()));
        }
        let mut numeric = Vec::new();
        for f in model.numeric {
            if !(f.weight.is_finite() && f.center.is_finite() && f.scale.is_finite()) {
                return Err(bad(&f.name, "weight, center and scale must be finite".into()));
            }
            if f.scale <= 0.0 {
                return Err(bad(&f.name, format!("scale must be positive, not {}", f.scale)));
            }
            let field = registry.register(f.field.as_deref().unwrap_or(&f.name)).map_err(|e| bad(&f.name, e))?;
            numeric.push(Numeric {
                label: f.name,
                field,
                weight: f.weight,
                transform: f.transform,
                center: f.center,
                scale: f.scale,
                missing: f.missing,
            });
        }
        let mut categorical = Vec::new();
        for f in model.categorical {
            if f.weights.values().chain([&f.other]).any(|w| !w.is_finite()) {
                return Err(bad(&f.name, "weights must be finite".into()));
            }
            let field = registry.register(f.field.as_deref().unwrap_or(&f.name)).map_err(|e| bad(&f.name, e))?;
            let weights = f
                .weights
                .into_iter()
                .map(|(cat, w)| {
                    let label = format!("{}={cat}", f.name);
                    (cat, w, label)
                })
                .collect();
            categorical.push(Categorical { field, weights, other: f.other, other_label: format!("{}=other", f.name) });
        }
        Ok(LogisticScorer { version: model.version, intercept: model.intercept, numeric, categorical })
    }

    #[cfg(test)]
    pub(super) fn score<'a>(&'a self, fields: &'a EventFields) -> Result<Score<'a>, Rejection> {
        self.score_into(fields, Vec::new())
    }

    /// Scores one event: the logistic of the weighted features, with the largest contributions
    /// written into `explanation` (emptied first).
    pub(super) fn score_into<'a>(
        &'a self,
        fields: &'a EventFields,
        explanation: Vec<Contribution<'a>>,
    ) -> Result<Score<'a>, Rejection> {
        let mut z = self.intercept;
        let mut top = TopK::default();
        for f in &self.numeric {
            let value = fields.get(f.field);
            let x = match (value, f.missing) {
                (FieldValue::Missing, Missing::Impute) => continue,
                _ => number(value, &f.label)?,
            };
            let x = match f.transform {
                Transform::None => x,
                Transform::Log1p => x.max(0.0).ln_1p(),
            };
            let c = f.weight * (x - f.center) / f.scale;
            z += c;
            top.offer(&f.label, c);
        }
        for f in &self.categorical {
            let value = fields.get(f.field);
            let text = value.as_text();
            let (w, label) = text
                .as_deref()
                .and_then(|t| f.weights.iter().find(|(cat, _, _)| cat == t))
                .map_or((f.other, f.other_label.as_str()), |(_, w, l)| (*w, l.as_str()));
            z += w;
            top.offer(label, w);
        }
        let risk = 1.0 / (1.0 + (-z).exp());
        if risk.is_nan() {
            // Opposite infinite contributions; no honest score exists for this input.
            return Err(Rejection::new(RejectReason::NonFiniteScore, "the model's log-odds are not a number"));
        }
        Ok(Score {
            risk,
            confidence: risk.max(1.0 - risk),
            model_version: Cow::Borrowed(&self.version),
            explanation: top.into_contributions(explanation),
            texts: ScoreTexts::default(),
        })
    }
}

/// The [`EXPLANATION_SIZE`] largest contributions by magnitude, kept without sorting them all.
#[derive(Default)]
struct TopK<'a> {
    items: [(&'a str, f64); EXPLANATION_SIZE],
    len: usize,
}

impl<'a> TopK<'a> {
    fn offer(&mut self, label: &'a str, c: f64) {
        let mut i = if self.len < EXPLANATION_SIZE {
            self.len += 1;
            self.len - 1
        } else if c.abs() > self.items[EXPLANATION_SIZE - 1].1.abs() {
            EXPLANATION_SIZE - 1
        } else {
            return;
        };
        self.items[i] = (label, c);
        while i > 0 && self.items[i].1.abs() > self.items[i - 1].1.abs() {
            self.items.swap(i, i - 1);
            i -= 1;
        }
    }

    /// The contributions, largest first, in `into` (emptied first).
    fn into_contributions(self, mut into: Vec<Contribution<'a>>) -> Vec<Contribution<'a>> {
        into.clear();
        into.extend(
            self.items[..self.len]
                .iter()
                .map(|&(feature, contribution)| Contribution { feature: Cow::Borrowed(feature), contribution }),
        );
        into
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = r#"
        version = "lr-test"
        intercept = -1.0
        [[numeric]]
        name = "amount"
        weight = 2.0
        transform = "log1p"
        center = 0.0
        scale = 1.0
        [[numeric]]
        name = "age_days"
        weight = -0.5
        center = 10.0
        scale = 10.0
        missing = "impute"
        [[categorical]]
        name = "country"
        weights = { NG = 1.5, US = -0.25 }
        other = 0.1
    "#;

    fn scorer() -> (LogisticScorer, FieldRegistry) {
        let mut r = FieldRegistry::default();
        let s = LogisticScorer::compile(LogisticModel::from_toml(MODEL).unwrap(), &mut r).unwrap();
        (s, r)
    }

    fn fields(
        amount: FieldValue<'static>,
        age: FieldValue<'static>,
        country: FieldValue<'static>,
    ) -> EventFields<'static> {
        EventFields::from_values(vec![amount, age, country])
    }

    #[test]
    fn computes_probability_confidence_and_explanation() {
        let (s, r) = scorer();
        assert_eq!(r.paths().len(), 3);
        let f = fields(FieldValue::Number(0.0), FieldValue::Number(30.0), FieldValue::Text("NG".into()));
        let score = s.score(&f).unwrap();
        // z = -1 + 2·ln(1) + (-0.5)·(30-10)/10 + 1.5 = -0.5
        let expected = 1.0 / (1.0 + 0.5f64.exp());
        assert!((score.risk - expected).abs() < 1e-12, "{}", score.risk);
        assert!((score.confidence - (1.0 - expected)).abs() < 1e-12);
        assert_eq!(score.model_version, "lr-test");
        let labels: Vec<_> = score.explanation.iter().map(|c| c.feature.as_ref()).collect();
        assert_eq!(labels, ["country=NG", "age_days", "amount"]);
        assert_eq!(score.explanation[1].contribution, -1.0);
    }

    #[test]
    fn unknown_category_uses_other_and_missing_numeric_is_imputed() {
        let (s, _) = scorer();
        let f = fields(FieldValue::Number(0.0), FieldValue::Missing, FieldValue::Text("FR".into()));
        let score = s.score(&f).unwrap();
        let z: f64 = -1.0 + 0.1;
        assert!((score.risk - 1.0 / (1.0 + (-z).exp())).abs() < 1e-12);
        assert_eq!(score.explanation[0].feature, "country=other");
    }

    #[test]
    fn missing_required_feature_is_rejected() {
        let (s, _) = scorer();
        let f = fields(FieldValue::Missing, FieldValue::Number(1.0), FieldValue::Missing);
        assert_eq!(s.score(&f).unwrap_err().reason, RejectReason::MissingField);
        let f = fields(FieldValue::Text("12".into()), FieldValue::Number(1.0), FieldValue::Missing);
        assert_eq!(s.score(&f).unwrap_err().reason, RejectReason::InvalidField);
    }

    #[test]
    fn risk_stays_in_the_unit_interval_for_extreme_inputs() {
        let (s, _) = scorer();
        for amount in [0.0, 1e300, f64::MAX] {
            let f = fields(FieldValue::Number(amount), FieldValue::Number(-1e300), FieldValue::Missing);
            let score = s.score(&f).unwrap();
            assert!((0.0..=1.0).contains(&score.risk) && score.risk.is_finite(), "{score:?}");
            assert!((0.5..=1.0).contains(&score.confidence));
        }
    }

    #[test]
    fn invalid_models_are_refused() {
        let mut r = FieldRegistry::default();
        let bad = LogisticModel::from_toml("version = \"x\"\n[[numeric]]\nname = \"a\"\nweight = 1.0\nscale = 0.0\n")
            .unwrap();
        assert!(matches!(LogisticScorer::compile(bad, &mut r), Err(ModelError::Feature { .. })));
        let empty = LogisticModel::from_toml("version = \"x\"").unwrap();
        assert!(matches!(LogisticScorer::compile(empty, &mut r), Err(ModelError::Empty)));
        assert!(LogisticModel::from_toml("version = \"x\"\nbogus = 1").is_err());
    }
}
