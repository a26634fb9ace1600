//! Audit records of reviewer activity: who (reviewer id and role), what (the action), when,
//! why (the rationale), and what they were shown (the redacted fields and features).

use super::{internal, iso, Gateway};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::sink::OutRecord;
use crate::store::CaseView;
use serde_json::{Map, Value};
use std::borrow::Cow;
use tollgate_schemas::{AuditAction, AuditRecord, Contribution};

/// The parts of an audit record that vary by action.
pub(super) struct Entry<'a> {
    pub action: AuditAction,
    /// The action's outcome (`shown`, `claimed`, the decision's action...).
    pub decision: &'a str,
    pub rationale: Option<&'a str>,
    /// What the reviewer was shown (redacted fields), or `None` for actions that show nothing.
    pub shown: Option<&'a Map<String, Value>>,
    /// Features as shown (names already redacted).
    pub features: Vec<(String, f64)>,
    /// SLA of the case and time taken so far, for decisions.
    pub sla: Option<(i64, i64)>,
}

impl Gateway {
    pub(super) fn audit_record(&self, case: &CaseView, who: &Principal, e: Entry<'_>) -> Result<OutRecord, ApiError> {
        let snapshot = match e.shown {
            Some(fields) => serde_json::to_string(fields).map_err(internal)?,
            None => "{}".to_owned(),
        };
        let r = &case.routed;
        let source = (&*r.source.topic, r.source.partition, r.source.offset);
        let record = AuditRecord {
            actor_role: Some(Cow::Borrowed(&who.role)),
            rule: Some(Cow::Borrowed(&r.rule)),
            guardrail: r.guardrail,
            policy_version: Some(Cow::Borrowed(&r.policy_version)),
            model_version: Some(Cow::Borrowed(&r.model_version)),
            risk_score: Some(r.risk),
            confidence: Some(r.confidence),
            explanation: e
                .features
                .into_iter()
                .map(|(feature, contribution)| Contribution { feature: feature.into(), contribution })
                .collect(),
            input_snapshot: Cow::Owned(snapshot),
            rationale: e.rationale.map(Cow::Borrowed),
            sla_expected_ms: e.sla.map(|(expected, _)| expected),
            sla_actual_ms: e.sla.map(|(_, actual)| actual),
            ..AuditRecord::new(&*case.event_id, iso(self.now()), &*who.reviewer_id, e.action, e.decision, source)
        };
        let mut value = Vec::new();
        record.write(self.format, &mut value).map_err(internal)?;
        Ok(OutRecord { topic: self.topics.audit_intake.clone(), key: case.event_id.to_string(), value: Some(value) })
    }
}
