//! The gateway's operations, free of HTTP: what each reviewer request may do to the view, what
//! it writes to Kafka, and what it audits. The API layer only authenticates, parses and maps.
//!
//! - `reads`: queue listings and case views (each shown case is audited);
//! - `actions`: claim, release, decide, second sign-off (each one Kafka transaction holding
//!   the decision or case state and its audit record).

mod actions;
mod audit;
mod reads;

use crate::access::Role;
use crate::auth::Principal;
use crate::config::{GatewayConfig, ReviewSettings, Topics};
use crate::error::ApiError;
use crate::sink::{OutRecord, Sink, SinkError};
use crate::store::{CaseStore, CaseView, Gate};
use crate::telemetry::Telemetry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate_schemas::RecordFormat;

/// Where "now" comes from: the system clock, or a manual one in tests.
#[derive(Clone)]
pub enum Clock {
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => {
                SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
            }
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn iso(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// The gateway's operations.
pub struct Gateway {
    store: Arc<CaseStore>,
    roles: HashMap<String, Role>,
    sink: Sink,
    telemetry: Telemetry,
    clock: Clock,
    topics: Topics,
    format: RecordFormat,
    review: ReviewSettings,
}

impl Gateway {
    pub fn new(config: &GatewayConfig, store: Arc<CaseStore>, sink: Sink, telemetry: Telemetry, clock: Clock) -> Self {
        Gateway {
            store,
            roles: config.roles.iter().map(|(name, r)| (name.clone(), Role::new(name, r))).collect(),
            sink,
            telemetry,
            clock,
            topics: config.topics.clone(),
            format: config.output_format,
            review: config.review.clone(),
        }
    }

    pub fn store(&self) -> &Arc<CaseStore> {
        &self.store
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn role(&self, who: &Principal) -> Result<&Role, ApiError> {
        // The authenticator admits only configured roles; this guards a token checked against
        // an older configuration.
        self.roles.get(&who.role).ok_or_else(|| ApiError::forbidden("no_role", "the token's role is not configured"))
    }

    /// The open case `event_id`, if this role may read its queue.
    fn readable(&self, role: &Role, event_id: &str) -> Result<CaseView, ApiError> {
        let case = self.store.case(event_id).ok_or_else(|| self.not_open(event_id))?;
        if !role.can_read(case.routed.queue) {
            return Err(ApiError::forbidden(
                "queue_forbidden",
                format!("role {} may not read the {} queue", role.name, case.routed.queue),
            ));
        }
        Ok(case)
    }

    /// Why `event_id` is not an open case: resolved (409) or unknown (404).
    fn not_open(&self, event_id: &str) -> ApiError {
        match self.store.disposition(event_id) {
            Some(d) => ApiError::conflict(
                "already_resolved",
                format!("case {event_id} is resolved ({}, by {})", d.outcome.as_str(), d.actor),
            ),
            None => ApiError::NotFound(format!("no case {event_id} is waiting for review")),
        }
    }

    /// True when the model recommends rejecting at this risk.
    fn recommends_reject(&self, risk: f64) -> bool {
        risk >= self.review.recommendation_cut
    }

    /// The case-state record of `gate`, or a tombstone.
    fn gate_record(&self, event_id: &str, gate: Option<&Gate>) -> Result<OutRecord, ApiError> {
        let value = match gate {
            Some(g) => {
                let mut buf = Vec::new();
                g.record(event_id).write(&mut buf).map_err(internal)?;
                Some(buf)
            }
            None => None,
        };
        Ok(OutRecord { topic: self.topics.gateway_state.clone(), key: event_id.to_owned(), value })
    }

    /// Writes an action's records in one transaction.
    async fn commit(&self, records: Vec<OutRecord>, audit_action: &str) -> Result<(), ApiError> {
        match self.sink.write_atomic(records).await {
            Ok(()) => {
                self.telemetry.audited(audit_action, 1);
                Ok(())
            }
            Err(e @ SinkError::Failed(_)) => {
                self.telemetry.write_failed("transaction");
                tracing::warn!(error = %e, "An action could not be written; nothing was changed.");
                Err(ApiError::Unavailable(format!("the action was not recorded, try again: {e}")))
            }
            // Counted and logged by the sink, which gets there also when the request has
            // been answered 503 `timeout` before.
            Err(e @ SinkError::Unconfirmed(_)) => Err(ApiError::Unconfirmed(format!(
                "the action may have been recorded: reload the case before trying again ({e})"
            ))),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("encoding a record failed: {e}"))
}
