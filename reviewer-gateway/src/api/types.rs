//! Request and response bodies of the `/v1` API, with their OpenAPI schemas.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tollgate_schemas::ReviewAction;
use utoipa::{IntoParams, ToSchema};

/// A review queue the caller may read, with its figures.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueSummary {
    /// `sync_review` or `async_review`.
    pub queue: String,
    /// Cases waiting for a reviewer (open or awaiting a second sign-off).
    pub open: usize,
    /// Of those, cases under a live claim.
    pub claimed: usize,
    pub awaiting_signoff: usize,
    /// Age of the oldest waiting case.
    pub oldest_age_seconds: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueSummary>,
}

/// Paging of a case listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// Cases per page (default and maximum from the configuration).
    pub limit: Option<usize>,
    /// Cases to skip (the `next_offset` of the previous page).
    pub offset: Option<usize>,
}

/// A claim on a case.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimInfo {
    pub reviewer_id: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// A case in a queue listing, in priority order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseSummary {
    pub event_id: String,
    pub queue: String,
    /// `open` or `awaiting_signoff`.
    pub status: String,
    /// Expected business impact (amount × risk); absent when the role may not see the amount.
    pub impact: Option<f64>,
    pub risk_score: f64,
    pub confidence: f64,
    pub rule: String,
    pub tier: i32,
    /// When the current tier's time runs out (RFC 3339); absent when the case is held.
    pub sla_deadline: Option<String>,
    pub age_seconds: f64,
    pub claim: Option<ClaimInfo>,
    /// The event, with the fields this role may not see redacted.
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
}

/// One page of a queue, by priority: sync before async, then impact, then age.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CasePage {
    pub cases: Vec<CaseSummary>,
    /// Cases in the listing, all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// Offset of the next page, absent on the last.
    pub next_offset: Option<usize>,
}

/// A feature's contribution to the score.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Feature {
    /// Feature name; a one-hot feature of a hidden field shows `field=[redacted]`.
    pub feature: String,
    pub contribution: f64,
}

/// SLA position of a case.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Sla {
    /// Escalation tier, from 1.
    pub tier: i32,
    /// When the current tier's time runs out (RFC 3339); absent when held.
    pub deadline: Option<String>,
    /// Every tier ran out and the case is held for a person.
    pub held: bool,
    pub breached: bool,
}

/// A first sign-off waiting for a second reviewer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignoffInfo {
    pub reviewer_id: String,
    /// `approve` or `reject`.
    pub action: String,
    pub rationale: String,
    pub at: String,
}

/// A recently resolved case sharing an account or merchant category with this one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SimilarCase {
    pub event_id: String,
    /// The similarity field they share (its value is in `fields` when the role may see it).
    pub matched_on: String,
    /// `approved` or `rejected`.
    pub outcome: String,
    /// The reviewer's action; absent for a timeout fallback.
    pub action: Option<String>,
    pub overridden: bool,
    pub risk_score: f64,
    pub decided_at: String,
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
}

/// Everything a reviewer needs to decide one case.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseDetail {
    pub event_id: String,
    pub queue: String,
    /// `open`, `awaiting_signoff` or `submitted` (decided; waiting for the router's join).
    pub status: String,
    /// The model's recommendation: `reject` at or above the recommendation cut, else `approve`.
    pub prediction: String,
    pub risk_score: f64,
    pub confidence: f64,
    /// Largest contributions first.
    pub top_features: Vec<Feature>,
    pub rule: String,
    /// A guardrail rule forced the route, whatever the score.
    pub guardrail: bool,
    pub policy_version: String,
    pub model_version: String,
    pub routed_at: String,
    pub sla: Sla,
    pub info_requested: bool,
    pub impact: Option<f64>,
    /// A final decision on this case needs a second reviewer's sign-off.
    pub requires_second_signoff: bool,
    pub claim: Option<ClaimInfo>,
    pub pending_signoff: Option<SignoffInfo>,
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    pub similar_cases: Vec<SimilarCase>,
}

/// A claim granted (or renewed).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimResponse {
    pub event_id: String,
    pub reviewer_id: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResponse {
    pub event_id: String,
    pub released: bool,
}

/// A reviewer's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionAction {
    Approve,
    Reject,
    Escalate,
    RequestInfo,
}

impl From<DecisionAction> for ReviewAction {
    fn from(a: DecisionAction) -> Self {
        match a {
            DecisionAction::Approve => ReviewAction::Approve,
            DecisionAction::Reject => ReviewAction::Reject,
            DecisionAction::Escalate => ReviewAction::Escalate,
            DecisionAction::RequestInfo => ReviewAction::RequestInfo,
        }
    }
}

/// A decision. A rationale is required when it overrides the model's recommendation and for
/// `request_info` (what information is needed).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub action: DecisionAction,
    #[serde(default)]
    pub rationale: Option<String>,
}

/// The second reviewer's answer to a pending high-impact decision.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignoffRequest {
    /// `true` confirms the first reviewer's decision (it becomes final); `false` refuses it
    /// (the case is open again, and a rationale is required).
    pub confirm: bool,
    #[serde(default)]
    pub rationale: Option<String>,
}

/// What happened to a decision or sign-off.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionResponse {
    pub event_id: String,
    pub decision_id: String,
    pub action: String,
    /// `submitted` (sent to the router), `awaiting_signoff` (a second reviewer must confirm) or
    /// `open` (a sign-off was refused).
    pub status: String,
    /// True when this answers a retried request (same Idempotency-Key); nothing new was written.
    pub replayed: bool,
}
