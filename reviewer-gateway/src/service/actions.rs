//! Actions: claim, release, decide, second sign-off. Each runs under the case's lock, checks
//! the case's state, writes its records in one transaction, then updates the view; a failed
//! write changes nothing.

use super::audit::Entry;
use super::Gateway;
use crate::api::types::{ClaimResponse, DecisionRequest, DecisionResponse, ReleaseResponse, SignoffRequest};
use crate::auth::Principal;
use crate::config::Permission;
use crate::error::ApiError;
use crate::sink::OutRecord;
use crate::store::{CaseView, Gate, Receipt, Status, Submitted};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use tollgate_schemas::{AuditAction, Claim, PendingSignoff, ReviewAction, ReviewDecision, SignoffAction};

/// Distinguishes decision ids of requests without an Idempotency-Key.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Longest Idempotency-Key accepted.
const MAX_KEY: usize = 200;

impl Gateway {
    /// Claims a case (or renews one's own claim) for the configured lease.
    pub async fn claim(&self, who: &Principal, event_id: &str) -> Result<ClaimResponse, ApiError> {
        let role = self.role(who)?;
        self.require(role.can(Permission::Claim), role, "claim cases")?;
        let lock = self.lock(event_id)?;
        let _guard = lock.lock().await;
        let case = self.readable(role, event_id)?;
        open_for_action(&case)?;
        let now = self.now();
        if let Some(c) = case.gate.live_claim(now).filter(|c| c.reviewer_id != who.reviewer_id) {
            self.telemetry.action("claim", "conflict");
            return Err(ApiError::conflict(
                "claimed_by_other",
                format!("case {event_id} is claimed by {} until {}", c.reviewer_id, super::iso(c.expires_at)),
            ));
        }
        let expires_at = now + self.review.claim_lease.as_millis_i64();
        let gate = Gate {
            revision: case.gate.revision + 1,
            claim: Some(Claim {
                reviewer_id: who.reviewer_id.clone().into(),
                reviewer_role: who.role.clone().into(),
                expires_at,
            }),
            signoff: None,
        };
        let audit = self.audit_record(&case, who, plain_entry(AuditAction::CaseClaim, "claimed", None))?;
        self.commit(vec![self.gate_record(event_id, Some(&gate))?, audit], AuditAction::CaseClaim.as_str()).await?;
        self.store.apply_gate(event_id, Some(gate.record(event_id)));
        self.telemetry.action("claim", "done");
        Ok(ClaimResponse {
            event_id: event_id.to_owned(),
            reviewer_id: who.reviewer_id.clone(),
            expires_at: super::iso(expires_at),
        })
    }

    /// Releases the caller's claim.
    pub async fn release(&self, who: &Principal, event_id: &str) -> Result<ReleaseResponse, ApiError> {
        let role = self.role(who)?;
        self.require(role.can(Permission::Claim), role, "claim cases")?;
        let lock = self.lock(event_id)?;
        let _guard = lock.lock().await;
        let case = self.readable(role, event_id)?;
        self.own_claim(&case, who)?;
        let gate = Gate { revision: case.gate.revision + 1, claim: None, signoff: case.gate.signoff.clone() };
        let audit = self.audit_record(&case, who, plain_entry(AuditAction::CaseRelease, "released", None))?;
        self.commit(vec![self.gate_record(event_id, Some(&gate))?, audit], AuditAction::CaseRelease.as_str()).await?;
        self.store.apply_gate(event_id, Some(gate.record(event_id)));
        self.telemetry.action("release", "done");
        Ok(ReleaseResponse { event_id: event_id.to_owned(), released: true })
    }

    /// Decides a claimed case. High-impact final decisions wait for a second sign-off.
    pub async fn decide(
        &self,
        who: &Principal,
        event_id: &str,
        request: DecisionRequest,
        key: Option<&str>,
    ) -> Result<DecisionResponse, ApiError> {
        let role = self.role(who)?;
        let action = ReviewAction::from(request.action);
        self.require(role.can(Permission::for_action(action)), role, action.as_str())?;
        let rationale = self.rationale(request.rationale)?;
        let decision_id = self.decision_id(who, event_id, key)?;
        if let Some(replay) = self.replay(&decision_id, event_id, action.as_str())? {
            return Ok(replay);
        }
        let lock = self.lock(event_id)?;
        let _guard = lock.lock().await;
        // A concurrent retry may have finished while this one waited for the lock.
        if let Some(replay) = self.replay(&decision_id, event_id, action.as_str())? {
            return Ok(replay);
        }
        let case = self.readable(role, event_id)?;
        open_for_action(&case)?;
        self.own_claim(&case, who)?;
        let overrides = match action {
            ReviewAction::Approve => self.recommends_reject(case.routed.risk),
            ReviewAction::Reject => !self.recommends_reject(case.routed.risk),
            _ => false,
        };
        if rationale.is_empty() && (overrides || action == ReviewAction::RequestInfo) {
            let why = if overrides { "overrides the model's recommendation" } else { "asks for information" };
            return Err(ApiError::invalid(
                "rationale_required",
                format!("a rationale is required: this decision {why}"),
            ));
        }
        let now = self.now();
        if action.is_final() && self.needs_second_signoff(&case) {
            let signoff = PendingSignoff {
                decision_id: decision_id.clone().into(),
                reviewer_id: who.reviewer_id.clone().into(),
                reviewer_role: who.role.clone().into(),
                action: if action == ReviewAction::Approve { SignoffAction::Approve } else { SignoffAction::Reject },
                rationale: rationale.clone().into(),
                at: now,
            };
            let gate = Gate { revision: case.gate.revision + 1, claim: None, signoff: Some(signoff) };
            let audit = self.audit_record(
                &case,
                who,
                plain_entry(AuditAction::SignoffRequested, action.as_str(), Some(&rationale)),
            )?;
            self.commit(vec![self.gate_record(event_id, Some(&gate))?, audit], AuditAction::SignoffRequested.as_str())
                .await?;
            self.store.apply_gate(event_id, Some(gate.record(event_id)));
            return Ok(self.answered(&decision_id, event_id, action.as_str(), Status::AwaitingSignoff, now));
        }
        let decision = ReviewDecision {
            decision_id: Some(Cow::Borrowed(&decision_id)),
            event_id: Cow::Borrowed(event_id),
            reviewer_id: Cow::Borrowed(&who.reviewer_id),
            reviewer_role: Cow::Borrowed(&who.role),
            action,
            rationale: Cow::Borrowed(&rationale),
            decided_at: now,
            second_signoff: None,
        };
        self.submit(&case, who, &decision, Some(&rationale)).await?;
        Ok(self.answered(&decision_id, event_id, action.as_str(), Status::Submitted, now))
    }

    /// A second reviewer confirms or refuses a pending high-impact decision.
    pub async fn signoff(
        &self,
        who: &Principal,
        event_id: &str,
        request: SignoffRequest,
        key: Option<&str>,
    ) -> Result<DecisionResponse, ApiError> {
        let role = self.role(who)?;
        self.require(role.can(Permission::Signoff), role, "sign off decisions")?;
        let rationale = self.rationale(request.rationale)?;
        let asked = if request.confirm { "signoff:confirm" } else { "signoff:refuse" };
        let decision_id = self.decision_id(who, event_id, key)?;
        if let Some(replay) = self.replay(&decision_id, event_id, asked)? {
            return Ok(replay);
        }
        let lock = self.lock(event_id)?;
        let _guard = lock.lock().await;
        if let Some(replay) = self.replay(&decision_id, event_id, asked)? {
            return Ok(replay);
        }
        let case = self.readable(role, event_id)?;
        if case.status() == Status::Submitted {
            return Err(ApiError::conflict("already_decided", format!("case {event_id} is already decided")));
        }
        let Some(pending) = case.gate.signoff.clone() else {
            return Err(ApiError::conflict(
                "no_signoff_pending",
                format!("case {event_id} has no decision to sign off"),
            ));
        };
        if pending.reviewer_id == who.reviewer_id.as_str() {
            return Err(ApiError::forbidden("own_decision", "a reviewer cannot sign off their own decision"));
        }
        let action = pending.action.action();
        self.require(role.can(Permission::for_action(action)), role, action.as_str())?;
        let now = self.now();
        if !request.confirm {
            if rationale.is_empty() {
                return Err(ApiError::invalid("rationale_required", "a refused sign-off needs a rationale"));
            }
            let gate = Gate { revision: case.gate.revision + 1, claim: None, signoff: None };
            let audit = self.audit_record(
                &case,
                who,
                plain_entry(AuditAction::SignoffRefused, action.as_str(), Some(&rationale)),
            )?;
            self.commit(vec![self.gate_record(event_id, Some(&gate))?, audit], AuditAction::SignoffRefused.as_str())
                .await?;
            self.store.apply_gate(event_id, Some(gate.record(event_id)));
            self.telemetry.action("signoff", "refused");
            return Ok(self.answered(&decision_id, event_id, asked, Status::Open, now));
        }
        let decision = ReviewDecision {
            decision_id: Some(Cow::Borrowed(&decision_id)),
            event_id: Cow::Borrowed(event_id),
            reviewer_id: pending.reviewer_id.clone(),
            reviewer_role: pending.reviewer_role.clone(),
            action,
            rationale: pending.rationale.clone(),
            decided_at: now,
            second_signoff: Some(Cow::Borrowed(&who.reviewer_id)),
        };
        let second_rationale = if rationale.is_empty() { None } else { Some(rationale.as_str()) };
        self.submit(&case, who, &decision, second_rationale).await?;
        self.telemetry.action("signoff", "confirmed");
        Ok(self.answered(&decision_id, event_id, asked, Status::Submitted, now))
    }

    /// Writes a decision, its audit record and the case's new state in one transaction.
    async fn submit(
        &self,
        case: &CaseView,
        who: &Principal,
        decision: &ReviewDecision<'_>,
        rationale: Option<&str>,
    ) -> Result<(), ApiError> {
        let event_id = &*case.event_id;
        let mut value = Vec::new();
        decision.write(self.format, &mut value).map_err(super::internal)?;
        let decision_record =
            OutRecord { topic: self.topics.review_decisions.clone(), key: event_id.to_owned(), value: Some(value) };
        let now = decision.decided_at;
        let expected = case.deadline.map_or(0, |d| d - case.routed.routed_at);
        let entry = Entry {
            action: AuditAction::DecisionSubmitted,
            decision: decision.action.as_str(),
            rationale,
            shown: None,
            features: Vec::new(),
            sla: Some((expected, now - case.routed.routed_at)),
        };
        let audit = self.audit_record(case, who, entry)?;
        // A final decision ends the gateway's part: the state is forgotten (a tombstone).
        // Otherwise the claim is released so the next tier (or the reviewer, once informed)
        // can pick the case up.
        let gate = (!decision.action.is_final()).then(|| Gate {
            revision: case.gate.revision + 1,
            claim: None,
            signoff: None,
        });
        let state = self.gate_record(event_id, gate.as_ref())?;
        self.commit(vec![decision_record, audit, state], AuditAction::DecisionSubmitted.as_str()).await?;
        match &gate {
            Some(g) => self.store.apply_gate(event_id, Some(g.record(event_id))),
            None => {
                self.store.apply_gate(event_id, None);
                self.store.mark_submitted(
                    event_id,
                    Submitted {
                        decision_id: decision.decision_id.as_deref().unwrap_or_default().to_owned(),
                        action: decision.action,
                        reviewer_id: decision.reviewer_id.to_string(),
                        at: now,
                    },
                );
            }
        }
        self.store.apply_decision(decision);
        Ok(())
    }

    fn require(&self, allowed: bool, role: &crate::access::Role, what: &str) -> Result<(), ApiError> {
        if allowed {
            Ok(())
        } else {
            Err(ApiError::forbidden("action_forbidden", format!("role {} may not {what}", role.name)))
        }
    }

    fn lock(&self, event_id: &str) -> Result<std::sync::Arc<tokio::sync::Mutex<()>>, ApiError> {
        self.store.lock(event_id).ok_or_else(|| self.not_open(event_id))
    }

    fn own_claim(&self, case: &CaseView, who: &Principal) -> Result<(), ApiError> {
        match case.gate.live_claim(self.now()) {
            Some(c) if c.reviewer_id == who.reviewer_id.as_str() => Ok(()),
            Some(c) => Err(ApiError::conflict(
                "claimed_by_other",
                format!("case {} is claimed by {}", case.event_id, c.reviewer_id),
            )),
            None => Err(ApiError::conflict("not_claimed", format!("claim case {} first", case.event_id))),
        }
    }

    fn rationale(&self, rationale: Option<String>) -> Result<String, ApiError> {
        let rationale = rationale.unwrap_or_default().trim().to_owned();
        if rationale.chars().count() > self.review.max_rationale {
            return Err(ApiError::invalid(
                "rationale_too_long",
                format!("the rationale is longer than {} characters", self.review.max_rationale),
            ));
        }
        Ok(rationale)
    }

    /// The decision id: the reviewer's Idempotency-Key, scoped to them, or a fresh one.
    fn decision_id(&self, who: &Principal, event_id: &str, key: Option<&str>) -> Result<String, ApiError> {
        match key {
            Some(k) if k.is_empty() || k.len() > MAX_KEY || !k.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(ApiError::invalid(
                    "invalid_idempotency_key",
                    format!("an Idempotency-Key is 1 to {MAX_KEY} visible ASCII characters"),
                ))
            }
            Some(k) => Ok(format!("{}/{k}", who.reviewer_id)),
            // Without a key: unique per request (time, and a sequence for requests in the same
            // millisecond).
            None => Ok(format!(
                "{}/{event_id}/{}-{}",
                who.reviewer_id,
                self.now(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            )),
        }
    }

    /// The earlier answer to the same Idempotency-Key, if any.
    fn replay(&self, decision_id: &str, event_id: &str, asked: &str) -> Result<Option<DecisionResponse>, ApiError> {
        let Some(r) = self.store.receipt(decision_id) else { return Ok(None) };
        if r.event_id != event_id || r.request != asked {
            return Err(ApiError::invalid(
                "idempotency_key_reused",
                format!("this Idempotency-Key was used for {} on {}", r.request, r.event_id),
            ));
        }
        self.telemetry.action(action_label(asked), "replayed");
        Ok(Some(DecisionResponse {
            event_id: r.event_id,
            decision_id: decision_id.to_owned(),
            action: asked.to_owned(),
            status: r.status.as_str().to_owned(),
            replayed: true,
        }))
    }

    fn answered(&self, decision_id: &str, event_id: &str, asked: &str, status: Status, now: i64) -> DecisionResponse {
        self.store.remember(
            decision_id,
            Receipt { event_id: event_id.to_owned(), request: asked.to_owned(), status, at: now },
        );
        self.telemetry.action(action_label(asked), status.as_str());
        DecisionResponse {
            event_id: event_id.to_owned(),
            decision_id: decision_id.to_owned(),
            action: asked.to_owned(),
            status: status.as_str().to_owned(),
            replayed: false,
        }
    }
}

/// Metric label of a request kind.
fn action_label(asked: &str) -> &str {
    if asked.starts_with("signoff") {
        "signoff"
    } else {
        asked
    }
}

fn open_for_action(case: &CaseView) -> Result<(), ApiError> {
    match case.status() {
        Status::Open => Ok(()),
        Status::Submitted => {
            Err(ApiError::conflict("already_decided", format!("case {} is already decided", case.event_id)))
        }
        Status::AwaitingSignoff => Err(ApiError::conflict(
            "awaiting_signoff",
            format!("case {} waits for a second reviewer's sign-off", case.event_id),
        )),
    }
}

fn plain_entry<'a>(action: AuditAction, decision: &'a str, rationale: Option<&'a str>) -> Entry<'a> {
    Entry { action, decision, rationale, shown: None, features: Vec::new(), sla: None }
}
