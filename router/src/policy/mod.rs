//! The policy stage: a versioned, ordered list of named rules over risk, confidence and event
//! fields, validated at start-up. Guardrails are evaluated first; then rules in order; the first
//! match decides; otherwise the default route applies.

mod analysis;
mod interval;
mod spec;

use crate::fields::{EventFields, FieldId, FieldRegistry, FieldValue};
use crate::score::Score;
pub use interval::Interval;
pub use spec::{BoundsSpec, ConditionSpec, PolicySpec, RuleSpec, Scalar, Untestable};
use tollgate_schemas::Route;

/// The rule name recorded when no rule matched.
pub const DEFAULT_RULE: &str = "default";

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("policy version may not be empty")]
    NoVersion,
    #[error("rule `{rule}`: {problem}")]
    Rule { rule: String, problem: String },
    #[error("rule `{rule}` can never match: {why}")]
    Unreachable { rule: String, why: String },
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Condition {
    Risk(Interval),
    Confidence(Interval),
    FieldRange(FieldId, Interval),
    FieldIn { field: FieldId, values: Vec<Scalar>, negate: bool },
    FieldExists(FieldId, bool),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub route: Route,
    pub guardrail: bool,
    pub all: Vec<Condition>,
    pub any: Vec<Condition>,
}

/// The decision of the policy for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub route: Route,
    /// Name of the matching rule, or [`DEFAULT_RULE`].
    pub rule: &'p str,
    pub guardrail: bool,
    /// The path of a field a bound was tested on while deciding, whose value was present but
    /// not a number (such as JSON text `"12.34"`), so the bound was false: the first such field.
    pub not_numeric: Option<&'p str>,
    /// The matching rule is a guardrail that held only because it could not test a bound
    /// (`untestable_guardrails = "match"`).
    pub untested: bool,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    version: String,
    default_route: Route,
    /// Guardrails first, then rules, in file order.
    rules: Vec<Rule>,
    /// The paths of the fields bounds are tested on, for [`Decision::not_numeric`].
    bounded: Vec<(FieldId, String)>,
    untestable: Untestable,
}

impl Policy {
    /// Parses, compiles and validates a policy file, registering the event fields it reads.
    pub fn from_toml(text: &str, registry: &mut FieldRegistry) -> Result<Self, PolicyError> {
        let spec: PolicySpec = toml::from_str(text)?;
        Policy::compile(spec, registry)
    }

    /// Compiles and validates a parsed policy.
    pub fn compile(spec: PolicySpec, registry: &mut FieldRegistry) -> Result<Self, PolicyError> {
        if spec.version.trim().is_empty() {
            return Err(PolicyError::NoVersion);
        }
        let mut rules = Vec::with_capacity(spec.guardrails.len() + spec.rules.len());
        let tagged = spec.guardrails.into_iter().map(|r| (r, true)).chain(spec.rules.into_iter().map(|r| (r, false)));
        for (rule, guardrail) in tagged {
            let bad = |problem: String| PolicyError::Rule { rule: rule.name.clone(), problem };
            if rule.name.trim().is_empty() || rule.name == DEFAULT_RULE {
                return Err(bad(format!("a rule needs a name other than `{DEFAULT_RULE}`")));
            }
            if rules.iter().any(|r: &Rule| r.name == rule.name) {
                return Err(bad("the name is used by an earlier rule".into()));
            }
            if guardrail && rule.all.is_empty() && rule.any.is_empty() {
                return Err(bad("a guardrail needs at least one condition".into()));
            }
            let compile_all = |conds: &[ConditionSpec], registry: &mut FieldRegistry| {
                conds.iter().map(|c| compile_condition(c, registry).map_err(bad)).collect::<Result<Vec<_>, _>>()
            };
            let all = compile_all(&rule.all, registry)?;
            let any = compile_all(&rule.any, registry)?;
            rules.push(Rule { name: rule.name, route: rule.route, guardrail, all, any });
        }
        analysis::check_reachability(&rules)?;
        let mut bounded: Vec<(FieldId, String)> = Vec::new();
        for c in rules.iter().flat_map(|r| r.all.iter().chain(&r.any)) {
            if let Condition::FieldRange(f, _) = c {
                if !bounded.iter().any(|(id, _)| id == f) {
                    bounded.push((*f, registry.path(*f).as_str().to_owned()));
                }
            }
        }
        let untestable = spec.untestable_guardrails;
        Ok(Policy { version: spec.version, default_route: spec.default_route, rules, bounded, untestable })
    }

    /// The policy's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The compiled rules, guardrails first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every route this policy can produce.
    pub fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        self.rules.iter().map(|r| r.route).chain([self.default_route])
    }

    /// Decides the route of one scored event.
    pub fn decide(&self, score: &Score<'_>, fields: &EventFields) -> Decision<'_> {
        let mut not_numeric = None;
        let (route, rule, guardrail, untested) = 'decided: {
            for rule in &self.rules {
                let all = rule.all.iter().all(|c| holds(c, score, fields, &mut not_numeric));
                if all && (rule.any.is_empty() || rule.any.iter().any(|c| holds(c, score, fields, &mut not_numeric))) {
                    break 'decided (rule.route, rule.name.as_str(), rule.guardrail, false);
                }
                // Only a bound that met a value other than a number leaves a guardrail
                // undecided: then, failing closed, it is tested again with such bounds unknown.
                if rule.guardrail && self.untestable == Untestable::Match && not_numeric.is_some() {
                    if let Tested::Unknown = guardrail_holds(rule, score, fields) {
                        break 'decided (rule.route, rule.name.as_str(), true, true);
                    }
                }
            }
            (self.default_route, DEFAULT_RULE, false, false)
        };
        let not_numeric = not_numeric.map(|id| self.bounded_path(id));
        Decision { route, rule, guardrail, not_numeric, untested }
    }

    /// The paths of the fields its bounds test.
    pub fn bounded_fields(&self) -> impl Iterator<Item = &str> {
        self.bounded.iter().map(|(_, path)| path.as_str())
    }

    /// The path of a field a bound is tested on.
    #[cold]
    fn bounded_path(&self, id: FieldId) -> &str {
        self.bounded.iter().find(|(f, _)| *f == id).map_or("", |(_, path)| path.as_str())
    }
}

/// Whether a condition holds, with a bound on a value that is not a number unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tested {
    True,
    False,
    Unknown,
}

impl Tested {
    /// Both hold: false decides, then unknown.
    fn and(self, other: Tested) -> Tested {
        match (self, other) {
            (Tested::False, _) | (_, Tested::False) => Tested::False,
            (Tested::Unknown, _) | (_, Tested::Unknown) => Tested::Unknown,
            _ => Tested::True,
        }
    }

    /// Either holds: true decides, then unknown.
    fn or(self, other: Tested) -> Tested {
        match (self, other) {
            (Tested::True, _) | (_, Tested::True) => Tested::True,
            (Tested::Unknown, _) | (_, Tested::Unknown) => Tested::Unknown,
            _ => Tested::False,
        }
    }
}

/// Whether guardrail `rule` holds with its bounds on values that are not numbers unknown
/// (three-valued: a condition known false rules it out; otherwise an unknown one leaves it
/// unknown). Out of line: only events with such values come here.
#[cold]
#[inline(never)]
fn guardrail_holds(rule: &Rule, score: &Score<'_>, fields: &EventFields) -> Tested {
    let tested = |c: &Condition| match c {
        Condition::FieldRange(f, _) if !matches!(fields.get(*f), FieldValue::Number(_) | FieldValue::Missing) => {
            Tested::Unknown
        }
        c if holds(c, score, fields, &mut None) => Tested::True,
        _ => Tested::False,
    };
    let all = rule.all.iter().map(tested).fold(Tested::True, Tested::and);
    let any =
        if rule.any.is_empty() { Tested::True } else { rule.any.iter().map(tested).fold(Tested::False, Tested::or) };
    all.and(any)
}

/// Whether `c` holds; a bound tested on a present value that is not a number is false, and its
/// field goes into `not_numeric` (unless one is there already).
#[inline]
fn holds(c: &Condition, score: &Score<'_>, fields: &EventFields, not_numeric: &mut Option<FieldId>) -> bool {
    match c {
        Condition::Risk(i) => i.contains(score.risk),
        Condition::Confidence(i) => i.contains(score.confidence),
        Condition::FieldRange(f, i) => match fields.get(*f) {
            FieldValue::Number(n) => i.contains(*n),
            FieldValue::Missing => false,
            _ => {
                not_numeric.get_or_insert(*f);
                false
            }
        },
        Condition::FieldIn { field, values, negate } => {
            let v = fields.get(*field);
            if matches!(v, FieldValue::Missing) {
                return false;
            }
            values.iter().any(|s| scalar_eq(s, v)) != *negate
        }
        Condition::FieldExists(f, present) => !matches!(fields.get(*f), FieldValue::Missing) == *present,
    }
}

fn scalar_eq(s: &Scalar, v: &FieldValue) -> bool {
    match (s, v) {
        (Scalar::Text(a), FieldValue::Text(b)) => a == b,
        (Scalar::Number(a), FieldValue::Number(b)) => a == b,
        (Scalar::Bool(a), FieldValue::Bool(b)) => a == b,
        _ => false,
    }
}

fn interval(b: &BoundsSpec, unit: bool) -> Result<Interval, String> {
    if b.is_empty() {
        return Err("a range condition needs at least one of gt, gte, lt, lte".into());
    }
    if b.gt.is_some() && b.gte.is_some() || b.lt.is_some() && b.lte.is_some() {
        return Err("give at most one lower bound (gt or gte) and one upper bound (lt or lte)".into());
    }
    for v in [b.gt, b.gte, b.lt, b.lte].into_iter().flatten() {
        if !v.is_finite() {
            return Err(format!("threshold {v} is not a finite number"));
        }
        if unit && !(0.0..=1.0).contains(&v) {
            return Err(format!("threshold {v} is outside [0, 1]"));
        }
    }
    let mut i = Interval::ALL;
    if let Some(v) = b.gt {
        i.lo = v;
    }
    if let Some(v) = b.gte {
        (i.lo, i.lo_closed) = (v, true);
    }
    if let Some(v) = b.lt {
        i.hi = v;
    }
    if let Some(v) = b.lte {
        (i.hi, i.hi_closed) = (v, true);
    }
    if i.is_empty() {
        return Err(format!("bounds {b:?} admit no value"));
    }
    Ok(i)
}

fn compile_condition(c: &ConditionSpec, registry: &mut FieldRegistry) -> Result<Condition, String> {
    let field_ops =
        !c.field_bounds().is_empty() || c.eq.is_some() || c.in_.is_some() || c.not_in.is_some() || c.exists.is_some();
    match (&c.risk, &c.confidence, &c.field) {
        (Some(b), None, None) if !field_ops => Ok(Condition::Risk(interval(b, true)?)),
        (None, Some(b), None) if !field_ops => Ok(Condition::Confidence(interval(b, true)?)),
        (None, None, Some(path)) => {
            let id = registry.register(path)?;
            let ops =
                [!c.field_bounds().is_empty(), c.eq.is_some(), c.in_.is_some(), c.not_in.is_some(), c.exists.is_some()];
            if ops.iter().filter(|x| **x).count() != 1 {
                return Err(format!(
                    "condition on field `{path}` needs exactly one kind of test: bounds (gt/gte/lt/lte), eq, in, not_in or exists"
                ));
            }
            if !c.field_bounds().is_empty() {
                return Ok(Condition::FieldRange(id, interval(&c.field_bounds(), false)?));
            }
            if let Some(v) = &c.eq {
                return Ok(Condition::FieldIn { field: id, values: vec![v.clone()], negate: false });
            }
            if let Some(present) = c.exists {
                return Ok(Condition::FieldExists(id, present));
            }
            let (values, negate) = match (&c.in_, &c.not_in) {
                (Some(v), _) => (v.clone(), false),
                (_, Some(v)) => (v.clone(), true),
                _ => unreachable!("one operator is present"),
            };
            if values.is_empty() {
                return Err(format!("condition on field `{path}` has an empty list"));
            }
            Ok(Condition::FieldIn { field: id, values, negate })
        }
        _ => Err(
            "a condition names exactly one of `risk = {..}`, `confidence = {..}` or `field = \"path\"` with its test"
                .into(),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests;
