//! The policy file as written by its authors (TOML), before validation.

use serde::Deserialize;
use tollgate_schemas::Route;

/// A routing policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Version string, stamped on every routed record and audit record.
    pub version: String,
    /// Route when no rule matches.
    pub default_route: Route,
    /// Rules evaluated before any other, whatever the score (e.g. sanctioned countries).
    #[serde(default)]
    pub guardrails: Vec<RuleSpec>,
    /// Ordered rules: the first that matches decides.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// What a guardrail does with a bound it cannot test (the field holds text, a boolean or an
    /// object, not a number).
    #[serde(default)]
    pub untestable_guardrails: Untestable,
}

/// What a guardrail does with a bound it cannot test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Untestable {
    /// The bound is false, as in every rule: the guardrail does not hold on it.
    #[default]
    Skip,
    /// The guardrail holds unless a condition it could test rules it out: an event it cannot
    /// clear is routed as it says (fail closed).
    Match,
}

/// One named rule. It matches when every `all` condition holds and, if `any` is not empty, at
/// least one `any` condition holds. A rule with neither matches every event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub route: Route,
    #[serde(default)]
    pub all: Vec<ConditionSpec>,
    #[serde(default)]
    pub any: Vec<ConditionSpec>,
}

/// One condition: on the risk score, on the confidence, or on an event field. Exactly one of
/// `risk`, `confidence` and `field` is given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// Bounds on the risk score (each in [0, 1]).
    pub risk: Option<BoundsSpec>,
    /// Bounds on the model confidence (each in [0, 1]).
    pub confidence: Option<BoundsSpec>,
    /// Path of an event field; with bounds (numbers), `eq`, `in`, `not_in` or `exists`.
    pub field: Option<String>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
    /// The field equals this value (a string, number or boolean).
    pub eq: Option<Scalar>,
    /// The field's value is one of these.
    #[serde(rename = "in")]
    pub in_: Option<Vec<Scalar>>,
    /// The field is present and its value is none of these.
    pub not_in: Option<Vec<Scalar>>,
    /// The field is present (`true`) or absent (`false`).
    pub exists: Option<bool>,
}

/// Comparison bounds; every given bound must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundsSpec {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl ConditionSpec {
    /// The numeric bounds given on a field condition.
    pub fn field_bounds(&self) -> BoundsSpec {
        BoundsSpec { gt: self.gt, gte: self.gte, lt: self.lt, lte: self.lte }
    }
}

impl BoundsSpec {
    pub fn is_empty(&self) -> bool {
        self.gt.is_none() && self.gte.is_none() && self.lt.is_none() && self.lte.is_none()
    }
}

/// A literal in a field condition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(f64),
    Text(String),
}
