//! Reads: the queues a role may see, a queue's cases by priority, one case in full. Every case
//! shown is audited (with exactly what was shown) before the response leaves.

use super::audit::Entry;
use super::{iso, Gateway};
use crate::access::Role;
use crate::api::types::{
    CaseDetail, CasePage, CaseSummary, ClaimInfo, Feature, QueueList, QueueSummary, SignoffInfo, SimilarCase, Sla,
};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::CaseView;
use tollgate_schemas::{AuditAction, Route};

impl Gateway {
    /// The queues this role reads, with their figures (no case is shown).
    pub fn queues(&self, who: &Principal) -> Result<QueueList, ApiError> {
        let role = self.role(who)?;
        let now = self.now();
        let stats = self.store.stats(now);
        let queues = role
            .queues()
            .filter_map(|q| stats.iter().find(|(s, _)| *s == q))
            .map(|(q, s)| QueueSummary {
                queue: q.as_str().to_owned(),
                open: s.open,
                claimed: s.claimed,
                awaiting_signoff: s.awaiting_signoff,
                oldest_age_seconds: s.oldest_routed_at.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0),
            })
            .collect();
        Ok(QueueList { queues })
    }

    /// One page of the waiting cases of `queue` (of every readable queue when `None`).
    pub async fn list(
        &self,
        who: &Principal,
        queue: Option<Route>,
        limit: Option<usize>,
        offset: Option<usize>,
    ) -> Result<CasePage, ApiError> {
        let role = self.role(who)?;
        let queues: Vec<Route> = match queue {
            Some(q) if !q.is_review() => return Err(ApiError::NotFound(format!("{q} is not a review queue"))),
            Some(q) if !role.can_read(q) => {
                return Err(ApiError::forbidden(
                    "queue_forbidden",
                    format!("role {} may not read the {q} queue", role.name),
                ))
            }
            Some(q) => vec![q],
            None => role.queues().collect(),
        };
        if queues.is_empty() {
            return Err(ApiError::forbidden("queue_forbidden", format!("role {} reads no queue", role.name)));
        }
        let limit = limit.unwrap_or(self.review.default_page_size);
        if limit == 0 || limit > self.review.max_page_size {
            return Err(ApiError::invalid(
                "invalid_paging",
                format!("limit must be between 1 and {}", self.review.max_page_size),
            ));
        }
        let offset = offset.unwrap_or(0);
        let all = self.store.queue(&queues);
        let total = all.len();
        let now = self.now();
        let mut cases = Vec::new();
        let mut audit = Vec::new();
        for case in all.iter().skip(offset).take(limit) {
            let fields = role.redact(&case.routed.event);
            audit.push(self.audit_record(
                case,
                who,
                Entry {
                    action: AuditAction::CaseListed,
                    decision: "shown",
                    rationale: None,
                    shown: Some(&fields),
                    features: Vec::new(),
                    sla: None,
                },
            )?);
            cases.push(CaseSummary {
                event_id: case.event_id.to_string(),
                queue: case.routed.queue.as_str().to_owned(),
                status: case.status().as_str().to_owned(),
                impact: self.visible_impact(role, case),
                risk_score: case.routed.risk,
                confidence: case.routed.confidence,
                rule: case.routed.rule.clone(),
                tier: case.tier,
                sla_deadline: case.deadline.map(iso),
                age_seconds: (now - case.routed.routed_at).max(0) as f64 / 1000.0,
                claim: claim_info(case, now),
                fields,
            });
        }
        self.audit_reads(audit, AuditAction::CaseListed).await?;
        let next = offset + cases.len();
        Ok(CasePage { cases, total, offset, limit, next_offset: (next < total).then_some(next) })
    }

    /// One case in full: prediction, features, policy, SLA, visible fields, similar cases.
    pub async fn case(&self, who: &Principal, event_id: &str) -> Result<CaseDetail, ApiError> {
        let role = self.role(who)?;
        let case = self.readable(role, event_id).map_err(|e| match e {
            // Reading a resolved case is "not here any more", not a conflict.
            ApiError::Conflict { message, .. } => ApiError::NotFound(message),
            other => other,
        })?;
        let now = self.now();
        let r = &case.routed;
        let fields = role.redact(&r.event);
        let features: Vec<(String, f64)> = r.explanation.iter().map(|(f, c)| (role.feature_name(f), *c)).collect();
        let similar = self
            .store
            .similar(&case)
            .into_iter()
            .map(|s| SimilarCase {
                event_id: s.disposition.event_id.to_string(),
                matched_on: s.matched_on,
                outcome: s.disposition.outcome.as_str().to_owned(),
                action: s.disposition.action.map(|a| a.as_str().to_owned()),
                overridden: s.disposition.overridden,
                risk_score: s.disposition.risk,
                decided_at: iso(s.disposition.decided_at),
                fields: role.redact(&s.disposition.event),
            })
            .collect();
        let detail = CaseDetail {
            event_id: case.event_id.to_string(),
            queue: r.queue.as_str().to_owned(),
            status: case.status().as_str().to_owned(),
            prediction: if self.recommends_reject(r.risk) { "reject" } else { "approve" }.to_owned(),
            risk_score: r.risk,
            confidence: r.confidence,
            top_features: features.iter().map(|(f, c)| Feature { feature: f.clone(), contribution: *c }).collect(),
            rule: r.rule.clone(),
            guardrail: r.guardrail,
            policy_version: r.policy_version.clone(),
            model_version: r.model_version.clone(),
            routed_at: iso(r.routed_at),
            sla: Sla {
                tier: case.tier,
                deadline: case.deadline.map(iso),
                held: case.held,
                breached: case.held || case.deadline.is_some_and(|d| d < now),
            },
            info_requested: case.info_requested,
            impact: self.visible_impact(role, &case),
            requires_second_signoff: self.needs_second_signoff(&case),
            claim: claim_info(&case, now),
            pending_signoff: case.gate.signoff.as_ref().map(|s| SignoffInfo {
                reviewer_id: s.reviewer_id.to_string(),
                action: s.action.action().as_str().to_owned(),
                rationale: s.rationale.to_string(),
                at: iso(s.at),
            }),
            fields,
            similar_cases: similar,
        };
        let record = self.audit_record(
            &case,
            who,
            Entry {
                action: AuditAction::CaseRead,
                decision: "shown",
                rationale: None,
                shown: Some(&detail.fields),
                features,
                sla: None,
            },
        )?;
        self.audit_reads(vec![record], AuditAction::CaseRead).await?;
        Ok(detail)
    }

    /// Writes read audits; nothing is shown unless they are written.
    async fn audit_reads(&self, records: Vec<crate::sink::OutRecord>, action: AuditAction) -> Result<(), ApiError> {
        let n = records.len();
        if n == 0 {
            return Ok(());
        }
        match self.sink.write(records).await {
            Ok(()) => {
                self.telemetry.audited(action.as_str(), n);
                Ok(())
            }
            Err(e) => {
                self.telemetry.write_failed("audit");
                Err(ApiError::Unavailable(format!("the read could not be audited, so nothing is shown: {e}")))
            }
        }
    }

    /// Amount × risk, when the role may see the amount (the product would reveal it).
    fn visible_impact(&self, role: &Role, case: &CaseView) -> Option<f64> {
        role.sees(&self.review.amount_field).then(|| case.impact())
    }

    /// High-impact cases need a second reviewer for a final decision.
    pub(super) fn needs_second_signoff(&self, case: &CaseView) -> bool {
        case.impact() >= self.review.second_signoff_min_impact
    }
}

fn claim_info(case: &CaseView, now: i64) -> Option<ClaimInfo> {
    case.gate
        .live_claim(now)
        .map(|c| ClaimInfo { reviewer_id: c.reviewer_id.to_string(), expires_at: iso(c.expires_at) })
}
