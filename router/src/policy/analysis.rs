//! Start-up checks that every rule of a policy can match some event.
//!
//! The check is conservative: it reports a rule only when it is certain the rule can never
//! decide. It finds (1) rules whose own conditions contradict each other, and (2) rules whose
//! every match is already matched by one earlier rule that tests only risk and confidence
//! (including a catch-all rule with no conditions). A rule shadowed only by the union of several
//! earlier rules is not reported.

use super::{Condition, Interval, PolicyError, Rule};
use std::collections::HashMap;

/// Risk and confidence both live in [0, 1].
const UNIT: Interval = Interval { lo: 0.0, lo_closed: true, hi: 1.0, hi_closed: true };

/// A region of the (risk, confidence) square.
#[derive(Debug, Clone, Copy)]
struct Region {
    risk: Interval,
    confidence: Interval,
    /// True when the region is exactly the matched set (no field condition narrows it).
    exact: bool,
}

impl Region {
    fn is_empty(&self) -> bool {
        self.risk.is_empty() || self.confidence.is_empty()
    }

    fn narrow(&self, c: &Condition) -> Region {
        let mut r = *self;
        match c {
            Condition::Risk(i) => r.risk = r.risk.intersect(i),
            Condition::Confidence(i) => r.confidence = r.confidence.intersect(i),
            _ => r.exact = false,
        }
        r
    }

    fn covers(&self, other: &Region) -> bool {
        self.exact && self.risk.covers(&other.risk) && self.confidence.covers(&other.confidence)
    }
}

/// The regions whose union contains every event `rule` matches.
fn regions(rule: &Rule) -> Result<Vec<Region>, String> {
    let mut base = Region { risk: UNIT, confidence: UNIT, exact: true };
    let mut field_ranges: HashMap<usize, Interval> = HashMap::new();
    for c in &rule.all {
        base = base.narrow(c);
        if let Condition::FieldRange(f, i) = c {
            let r = field_ranges.entry(f.0).or_insert(Interval::ALL);
            *r = r.intersect(i);
            if r.is_empty() {
                return Err("its `all` conditions on one field contradict each other".into());
            }
        }
    }
    if base.is_empty() {
        return Err("its `all` conditions on risk and confidence admit no score in [0, 1]".into());
    }
    if rule.any.is_empty() {
        return Ok(vec![base]);
    }
    let parts: Vec<Region> = rule.any.iter().map(|c| base.narrow(c)).filter(|r| !r.is_empty()).collect();
    if parts.is_empty() {
        return Err("none of its `any` conditions is compatible with its `all` conditions".into());
    }
    Ok(parts)
}

pub(super) fn check_reachability(rules: &[Rule]) -> Result<(), PolicyError> {
    let mut earlier: Vec<(&str, Vec<Region>)> = Vec::with_capacity(rules.len());
    for rule in rules {
        let unreachable = |why: String| PolicyError::Unreachable { rule: rule.name.clone(), why };
        let mine = regions(rule).map_err(unreachable)?;
        let mut shadowing = Vec::new();
        let shadowed = mine.iter().all(|region| {
            let by = earlier.iter().find(|(_, theirs)| theirs.iter().any(|t| t.covers(region)));
            if let Some((name, _)) = by {
                if !shadowing.contains(name) {
                    shadowing.push(*name);
                }
            }
            by.is_some()
        });
        if shadowed {
            let names = shadowing.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
            return Err(unreachable(format!("every event it matches is matched first by {names}")));
        }
        earlier.push((&rule.name, mine));
    }
    Ok(())
}
