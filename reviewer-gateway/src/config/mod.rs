//! The gateway's configuration: one TOML file, overridable by environment variables
//! (`TOLLGATE__KAFKA__BROKERS=host:9092` sets `kafka.brokers`), validated at start-up.
//!
//! Every field's doc comment is its user documentation. Relative paths (the JWKS file, an Avro
//! event schema) are resolved against the directory of the configuration file.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
pub use tollgate_common::ConfigError;
use tollgate_common::HumanDuration;
use tollgate_schemas::{RecordFormat, ReviewAction, Route};

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    #[serde(default)]
    pub http: HttpSettings,
    pub kafka: KafkaSettings,
    #[serde(default)]
    pub topics: Topics,
    /// Encoding of the decision and audit records the gateway writes (the router reads both).
    #[serde(default)]
    pub output_format: RecordFormat,
    #[serde(default)]
    pub event: EventSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub review: ReviewSettings,
    /// Roles by name: the queues each may read, the actions it may take, the fields it may see.
    pub roles: BTreeMap<String, RoleSettings>,
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The HTTP listener and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address of the API (and of `/metrics`, `/healthz`, `/readyz`, `/openapi.json`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// A request that takes longer is answered 503 `timeout`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: default_listen(),
            body_limit: default_body_limit(),
            request_timeout: default_request_timeout(),
        }
    }
}

/// Kafka connection and client overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Create missing topics at start-up (with `partitions` and `replication`).
    #[serde(default = "yes")]
    pub create_topics: bool,
    /// Must equal the router's, so decisions land on the partition holding their review.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "one")]
    pub replication: i32,
    /// librdkafka producer settings, applied last.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// librdkafka consumer settings, applied last.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
}

/// Topic names; the defaults match the router's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub sync_review: String,
    pub async_review: String,
    pub resolved: String,
    pub escalations: String,
    pub review_decisions: String,
    /// Where the gateway's audit records go; the router's audit chainer links them into
    /// `tollgate.audit`.
    pub audit_intake: String,
    /// The gateway's own compacted state: claims and first sign-offs.
    pub gateway_state: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            sync_review: "tollgate.sync-review".into(),
            async_review: "tollgate.async-review".into(),
            resolved: "tollgate.resolved".into(),
            escalations: "tollgate.escalations".into(),
            review_decisions: "tollgate.review-decisions".into(),
            audit_intake: "tollgate.audit-intake".into(),
            gateway_state: "tollgate.gateway-state".into(),
        }
    }
}

impl Topics {
    /// The topic of a review queue.
    pub fn queue_topic(&self, queue: Route) -> Option<&str> {
        match queue {
            Route::SyncReview => Some(&self.sync_review),
            Route::AsyncReview => Some(&self.async_review),
            _ => None,
        }
    }
}

/// How to read the original event of an Avro input (JSON events need nothing).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Avro schema of the input events (the router's `input.avro_schema`).
    pub avro_schema: Option<PathBuf>,
    /// The events are in the Confluent wire format (the router's input format `avro_confluent`).
    #[serde(default)]
    pub confluent: bool,
}

/// Token checks. At least one of `hs256_secret` and `jwks_file` must be set.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Shared secret of HS256 tokens (set it by environment, `TOLLGATE__AUTH__HS256_SECRET`, in
    /// production); at least 32 bytes.
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// JSON Web Key Set of an SSO/OIDC provider's RS256 keys.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The claim holding the reviewer's role (a string, or an array with exactly one configured
    /// role).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("AuthSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("hs256_secret", &self.hs256_secret.as_ref().map(|_| "<set>"))
            .field("jwks_file", &self.jwks_file)
            .field("role_claim", &self.role_claim)
            .finish()
    }
}

/// How cases are prioritised, claimed and decided.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewSettings {
    /// The model recommends reject at or above this risk (the router's `review.recommendation_cut`);
    /// approving such a case, or rejecting one below it, is an override and needs a rationale.
    pub recommendation_cut: f64,
    /// How long a claim lasts; claiming again renews it.
    pub claim_lease: HumanDuration,
    /// Event field holding the amount; priority is amount × risk (sync before async, then age).
    pub amount_field: String,
    /// A final decision on a case whose amount × risk reaches this needs a second reviewer.
    pub second_signoff_min_impact: f64,
    /// Event fields that make two cases similar (same account, same merchant category).
    pub similar_fields: Vec<String>,
    /// Similar cases shown with a case.
    pub similar_limit: usize,
    /// Resolved cases remembered for the similar-case lookup.
    pub history_limit: usize,
    pub default_page_size: usize,
    pub max_page_size: usize,
    /// Longest rationale accepted, in characters.
    pub max_rationale: usize,
    /// How long an Idempotency-Key is remembered.
    pub idempotency_retention: HumanDuration,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        ReviewSettings {
            recommendation_cut: 0.5,
            claim_lease: HumanDuration::mins(15),
            amount_field: "amount".into(),
            second_signoff_min_impact: f64::INFINITY,
            similar_fields: vec!["account_id".into(), "merchant_category".into()],
            similar_limit: 5,
            history_limit: 100_000,
            default_page_size: 50,
            max_page_size: 500,
            max_rationale: 4_000,
            idempotency_retention: HumanDuration::mins(24 * 60),
        }
    }
}

/// What the gateway lets a role do besides reading its queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Claim,
    Approve,
    Reject,
    Escalate,
    RequestInfo,
    /// Second sign-off of another reviewer's high-impact decision.
    Signoff,
}

impl Permission {
    /// The permission a review action needs.
    pub const fn for_action(action: ReviewAction) -> Permission {
        match action {
            ReviewAction::Approve => Permission::Approve,
            ReviewAction::Reject => Permission::Reject,
            ReviewAction::Escalate => Permission::Escalate,
            ReviewAction::RequestInfo => Permission::RequestInfo,
        }
    }
}

/// One role. Nothing is granted by default: a role sees only the listed queues and fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSettings {
    pub queues: BTreeSet<Route>,
    #[serde(default)]
    pub actions: BTreeSet<Permission>,
    /// Event fields shown; every other field is redacted. A dotted path (`card.country`) shows
    /// one field of a nested object.
    #[serde(default)]
    pub fields: BTreeSet<String>,
}

/// A Slack-compatible webhook, called when a case enters sync review and on escalation to
/// `escalation_tier`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    #[serde(default = "default_escalation_tier")]
    pub escalation_tier: i32,
    /// Link to the case in the reviewers' tool; `{event_id}` is replaced.
    #[serde(default)]
    pub case_url: Option<String>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout: HumanDuration,
    /// Attempts after the first, with doubling back-off from `backoff`.
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    /// Notifications waiting to be sent; beyond it new ones are dropped (and counted).
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
    /// At start-up, cases that entered sync review or escalated longer ago than this are not
    /// announced again.
    #[serde(default = "default_replay_window")]
    pub replay_window: HumanDuration,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_client_id() -> String {
    "tollgate-gateway".into()
}
fn default_partitions() -> i32 {
    6
}
fn one() -> i32 {
    1
}
fn yes() -> bool {
    true
}
fn default_role_claim() -> String {
    "role".into()
}
fn default_leeway() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_escalation_tier() -> i32 {
    3
}
fn default_webhook_timeout() -> HumanDuration {
    HumanDuration::secs(5)
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> HumanDuration {
    HumanDuration::secs(1)
}
fn default_webhook_queue() -> usize {
    1_000
}
fn default_replay_window() -> HumanDuration {
    HumanDuration::mins(15)
}

impl GatewayConfig {
    /// Loads a configuration file, applies `TOLLGATE__*` environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        tollgate_common::load_file(path)
    }

    /// Parses configuration text (e.g. an embedded default), applies environment overrides and
    /// validates. Relative paths resolve against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        tollgate_common::load_text(text, base_dir)
    }

    /// Resolves a configured path against the configuration file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        tollgate_common::resolve(&self.base_dir, path)
    }

    /// Cross-field checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.kafka.brokers.trim().is_empty() {
            return bad("kafka.brokers may not be empty".into());
        }
        if self.kafka.partitions < 1 || self.kafka.replication < 1 {
            return bad("kafka.partitions and kafka.replication must be at least 1".into());
        }
        let t = &self.topics;
        let names = [
            &t.sync_review,
            &t.async_review,
            &t.resolved,
            &t.escalations,
            &t.review_decisions,
            &t.audit_intake,
            &t.gateway_state,
        ];
        if names.iter().any(|n| n.trim().is_empty()) {
            return bad("topic names may not be empty".into());
        }
        let a = &self.auth;
        if a.hs256_secret.is_none() && a.jwks_file.is_none() {
            return bad("auth needs hs256_secret or jwks_file (or both)".into());
        }
        if a.hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return bad("auth.hs256_secret must be at least 32 bytes".into());
        }
        if a.issuer.trim().is_empty() || a.audience.trim().is_empty() {
            return bad("auth.issuer and auth.audience may not be empty".into());
        }
        if let Some(jwks) = &a.jwks_file {
            if !self.resolve(jwks).is_file() {
                return bad(format!("auth.jwks_file {} does not exist", self.resolve(jwks).display()));
            }
        }
        if let Some(schema) = &self.event.avro_schema {
            if !self.resolve(schema).is_file() {
                return bad(format!("event.avro_schema {} does not exist", self.resolve(schema).display()));
            }
        }
        let r = &self.review;
        if !(0.0..=1.0).contains(&r.recommendation_cut) {
            return bad(format!("review.recommendation_cut {} is outside [0, 1]", r.recommendation_cut));
        }
        if r.claim_lease.0.is_zero() {
            return bad("review.claim_lease must be positive".into());
        }
        if r.second_signoff_min_impact.is_nan() || r.second_signoff_min_impact < 0.0 {
            return bad("review.second_signoff_min_impact must be a number of at least 0".into());
        }
        if r.default_page_size == 0 || r.default_page_size > r.max_page_size {
            return bad("review.default_page_size must be between 1 and review.max_page_size".into());
        }
        if r.max_rationale == 0 {
            return bad("review.max_rationale must be positive".into());
        }
        if self.roles.is_empty() {
            return bad("at least one role must be configured".into());
        }
        for (name, role) in &self.roles {
            if let Some(q) = role.queues.iter().find(|q| !q.is_review()) {
                return bad(format!("role {name}: {q} is not a review queue (async_review or sync_review)"));
            }
            if role.fields.iter().any(|f| f.is_empty() || f.split('.').any(str::is_empty)) {
                return bad(format!("role {name}: a field name is empty"));
            }
            if !role.actions.is_empty() && role.queues.is_empty() {
                return bad(format!("role {name} may act but reads no queue"));
            }
        }
        if let Some(w) = &self.webhook {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return bad(format!("webhook.url `{}` is not an http(s) URL", w.url));
            }
            if w.queue == 0 {
                return bad("webhook.queue must be positive".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

impl tollgate_common::ServiceConfig for GatewayConfig {
    fn set_base_dir(&mut self, dir: PathBuf) {
        self.base_dir = dir;
    }

    fn validate(&self) -> Result<(), ConfigError> {
        GatewayConfig::validate(self)
    }
}
