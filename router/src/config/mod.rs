//! The router's configuration: one TOML file, overridable by environment variables
//! (`TOLLGATE__KAFKA__BROKERS=host:9092` sets `kafka.brokers`), validated at start-up.
//!
//! Every field's doc comment is its user documentation; the README's configuration reference
//! follows it. Relative paths (schemas, models, policies) are resolved against the directory of
//! the configuration file.

mod validate;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tollgate_schemas::RecordFormat;

pub use tollgate_common::{ConfigError, HumanDuration, ENV_PREFIX};

/// The router's whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Where to consume from and how to talk to Kafka.
    pub kafka: KafkaConfig,
    /// Output topic names.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Input format and the event fields the router reads.
    #[serde(default)]
    pub input: InputConfig,
    /// Which scorer computes risk and confidence.
    #[serde(default)]
    pub scorer: ScorerConfig,
    /// The routing policy file.
    pub policy: PolicyConfig,
    /// Encoding of routed and audit records.
    #[serde(default)]
    pub output: OutputConfig,
    /// Review queues: SLA tiers per queue.
    #[serde(default)]
    pub review: ReviewConfig,
    /// The metrics and health endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Batching, in-flight bounds and shutdown.
    #[serde(default)]
    pub processing: ProcessingConfig,
    /// What audit records show of the input.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Baseline of the model's output, for the drift metrics.
    #[serde(default)]
    pub drift: DriftConfig,
    /// Directory relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Kafka connection and consumer-group settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic of incoming events.
    pub input_topic: String,
    /// Consumer group; router instances in one group split the input partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Client id reported to the brokers.
    #[serde(default = "default_group")]
    pub client_id: String,
    /// Create missing topics at start-up (turn off where the router may not create topics).
    #[serde(default = "yes")]
    pub create_topics: bool,
    /// Partitions of topics the router creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics the router creates.
    #[serde(default = "one_i32")]
    pub replication: i32,
    /// Extra librdkafka consumer settings, passed through unchanged (they win over Tollgate's).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// Settings for one of the router's consumers only, over `consumer`'s (they win).
    #[serde(default)]
    pub consumers: ConsumerSettings,
    /// Extra librdkafka producer settings, passed through unchanged (they win over Tollgate's).
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

/// librdkafka settings per consumer of the router, passed through unchanged over
/// `kafka.consumer`'s: a consumer that can wait longer for its records (the audit chainer's,
/// the review join's) can be given a longer fetch wait than the routing loops', sparing the
/// broker's work while they are idle.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// The routing loops' consumers of the input topic.
    pub routing: BTreeMap<String, String>,
    /// The review join's consumers of decisions and of the pending-review changelog.
    pub review_join: BTreeMap<String, String>,
    /// The audit chainer's consumers of the audit intake and of the audit topic's tail.
    pub audit_chain: BTreeMap<String, String>,
}

/// Output topics. An empty `auto_reject` disables that route (a policy that uses it is refused).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    pub auto_commit: String,
    pub async_review: String,
    pub sync_review: String,
    pub auto_reject: String,
    /// Records that cannot be decoded or fail validation, byte for byte, with the reason in headers.
    pub dead_letter: String,
    /// The audit trail: every record linked into its partition's hash chain by the audit chainer.
    pub audit: String,
    /// Where every Tollgate writer (router, review join, gateway) sends audit records; the
    /// chainer moves them to `audit`. As many partitions as `audit`.
    pub audit_intake: String,
    /// Reviewers' decisions, keyed by event id (Java's default partitioner, murmur2).
    pub review_decisions: String,
    /// Compacted changelog of pending reviews; as many partitions as `review_decisions`.
    pub pending_changelog: String,
    /// Outcomes of reviews, joined to their events.
    pub resolved: String,
    /// Escalations between review tiers.
    pub escalations: String,
    /// Compensating records for rejected post-verify events.
    pub rollbacks: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            auto_commit: "tollgate.auto-commit".into(),
            async_review: "tollgate.async-review".into(),
            sync_review: "tollgate.sync-review".into(),
            auto_reject: "tollgate.auto-reject".into(),
            dead_letter: "tollgate.dead-letter".into(),
            audit: "tollgate.audit".into(),
            audit_intake: "tollgate.audit-intake".into(),
            review_decisions: "tollgate.review-decisions".into(),
            pending_changelog: "tollgate.pending-changelog".into(),
            resolved: "tollgate.resolved".into(),
            escalations: "tollgate.escalations".into(),
            rollbacks: "tollgate.rollbacks".into(),
        }
    }
}

impl TopicsConfig {
    /// The topic of a route (`None` when the route is disabled).
    pub fn for_route(&self, route: tollgate_schemas::Route) -> Option<&str> {
        use tollgate_schemas::Route::*;
        let t = match route {
            AutoCommit => &self.auto_commit,
            AsyncReview => &self.async_review,
            SyncReview => &self.sync_review,
            AutoReject => &self.auto_reject,
        };
        (!t.is_empty()).then_some(t.as_str())
    }

    /// Every enabled output topic.
    pub fn all(&self) -> Vec<&str> {
        [
            &self.auto_commit,
            &self.async_review,
            &self.sync_review,
            &self.auto_reject,
            &self.dead_letter,
            &self.audit,
            &self.audit_intake,
            &self.review_decisions,
            &self.pending_changelog,
            &self.resolved,
            &self.escalations,
            &self.rollbacks,
        ]
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(String::as_str)
        .collect()
    }
}

/// Input format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// One JSON object per record.
    #[default]
    Json,
    /// One Avro datum of `avro_schema` per record.
    Avro,
    /// Confluent wire format: magic byte 0, 4-byte schema id, then a datum of `avro_schema`.
    AvroConfluent,
}

/// How to read input events.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    #[serde(default)]
    pub format: InputFormat,
    /// Avro schema file (`.avsc`) of the input, for `avro` and `avro_confluent`.
    pub avro_schema: Option<PathBuf>,
    /// For `avro_confluent`: accepted schema ids (empty accepts any id; the configured schema is
    /// used to decode).
    #[serde(default)]
    pub confluent_schema_ids: Vec<u32>,
    /// Paths of the fields the router reads (dotted for nested fields).
    #[serde(default)]
    pub fields: InputFields,
}

/// Field paths of the event's identity and upstream scores.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputFields {
    /// Unique event id (required in every event).
    pub event_id: String,
    /// Field whose value keys the output when the input record has no Kafka key (empty: use
    /// the event id).
    pub key: String,
    /// Upstream risk score in [0, 1] (read by the `field` scorer).
    pub risk_score: String,
    /// Upstream model confidence in [0, 1] (read by the `field` scorer).
    pub confidence: String,
    /// Upstream model version (read by the `field` scorer; empty to use `scorer.model_version`).
    pub model_version: String,
}

impl Default for InputFields {
    fn default() -> Self {
        InputFields {
            event_id: "event_id".into(),
            key: String::new(),
            risk_score: "risk_score".into(),
            confidence: "model_confidence".into(),
            model_version: "model_version".into(),
        }
    }
}

/// Scorer selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScorerKind {
    /// Risk and confidence come with the event, from an upstream model.
    #[default]
    Field,
    /// The built-in logistic model of `scorer.model`.
    Logistic,
}

/// Which scorer to use and its model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorerConfig {
    #[serde(default)]
    pub kind: ScorerKind,
    /// Model file of the `logistic` scorer (TOML).
    pub model: Option<PathBuf>,
    /// For the `field` scorer: model version when the event carries none.
    pub model_version: Option<String>,
}

/// The routing policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy file (TOML): version, guardrails, ordered rules and the default route.
    pub file: PathBuf,
    /// How often the file is checked for changes (a change is validated, then applied without a
    /// restart; SIGHUP checks at once). `0s` turns the check off (SIGHUP still works).
    #[serde(default = "default_policy_watch")]
    pub watch: HumanDuration,
}

fn default_policy_watch() -> HumanDuration {
    HumanDuration::secs(2)
}

/// The routed and audit records: their encoding, and the routed records' headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// `json` or `avro` (schemas in the `schemas` crate) for routed and audit records.
    #[serde(default)]
    pub format: RecordFormat,
    /// Whether routed records (and post-verify samples) carry the `tollgate.route`,
    /// `tollgate.policy.version` and `tollgate.model.version` headers. Their values are also
    /// in the record; the headers let a consumer filter without decoding it, and cost the
    /// producer an allocation per header per record. Dead letters always carry theirs.
    #[serde(default = "yes")]
    pub headers: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { format: RecordFormat::default(), headers: yes() }
    }
}

/// Review queues and how human decisions are joined back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    pub sync_review: QueueConfig,
    pub async_review: QueueConfig,
    /// The model "recommends" reject when the risk score is at or above this cut, approve below
    /// it; a human outcome that differs is an override.
    pub recommendation_cut: f64,
    /// How long a decision for an event not yet known waits for that event (decisions and
    /// routed events travel on different topics) before it is dead-lettered.
    pub decision_grace: HumanDuration,
    /// How long a resolved event is remembered, so a repeated decision is recognised.
    pub resolved_retention: HumanDuration,
    /// Fraction of auto-committed events (chosen by a hash of the event id, so the same events
    /// on a replay) also sent to async review as post-verify samples.
    pub audit_sample_rate: f64,
    /// Run the review join (decisions, SLA timers, escalations) in this router process.
    pub join: bool,
    /// How often SLA deadlines are checked.
    pub tick: HumanDuration,
    /// Memory (MiB) for the original events of pending reviews, kept as the join reads them from
    /// the changelog so a resolution need not read them back. Beyond it, events are read back
    /// from the changelog when their review ends; 0 always reads them back.
    pub event_cache_mib: u64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            sync_review: QueueConfig {
                tiers: vec![HumanDuration::mins(30), HumanDuration::mins(60), HumanDuration::mins(30)],
                fallback: Fallback::Hold,
                post_verify: false,
            },
            async_review: QueueConfig {
                tiers: vec![HumanDuration::mins(240)],
                fallback: Fallback::Hold,
                post_verify: false,
            },
            recommendation_cut: 0.5,
            decision_grace: HumanDuration::secs(60),
            resolved_retention: HumanDuration::secs(7 * 24 * 3600),
            audit_sample_rate: 0.0,
            join: true,
            tick: HumanDuration::secs(1),
            event_cache_mib: 64,
        }
    }
}

/// One review queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Time allowed to each escalation tier, in order (`["30m", "1h", "30m"]`): tier 1 must
    /// decide within the first; when a tier's time runs out the case escalates to the next; when
    /// the last tier's runs out, `fallback` applies. The routed record's `sla_deadline` is the
    /// end of tier 1, which is also the SLA a decision is measured against.
    pub tiers: Vec<HumanDuration>,
    /// What happens when every tier ran out: `reject`, `approve`, or `hold` (stay pending).
    /// Whatever it is, it is recorded as decided by policy timeout.
    #[serde(default)]
    pub fallback: Fallback,
    /// Pre-accept / post-verify: the event also proceeds on the auto-commit topic at once, and
    /// a later human reject emits a compensating record on the rollbacks topic.
    #[serde(default)]
    pub post_verify: bool,
}

/// What a review that ran out of every tier turns into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Reject the event.
    Reject,
    /// Approve the event.
    Approve,
    /// Keep it pending, flagged as timed out.
    #[default]
    Hold,
}

/// The metrics and health endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    pub enabled: bool,
    /// Listen address (port 0 picks a free port, logged at start).
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: SocketAddr::from(([0, 0, 0, 0], 9464)) }
    }
}

/// Delivery guarantee of the routing loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Offsets stored once outputs are acknowledged; a crash may replay outputs.
    #[default]
    AtLeastOnce,
    /// Outputs and input offsets committed in one Kafka transaction per batch.
    ExactlyOnce,
}

/// Most routing loops one process runs (`processing.routing_threads`).
pub const MAX_ROUTING_THREADS: usize = 64;

/// Throughput and shutdown settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// `at_least_once` (default) or `exactly_once` (Kafka transactions; consumers of the
    /// outputs must read with `isolation.level=read_committed`).
    pub guarantee: Guarantee,
    /// Transactional id: unique per router instance and stable across its restarts (default:
    /// `<group_id>.<HOSTNAME>`). The `exactly_once` routing loop uses it; the audit chainer
    /// always uses it with `.audit` appended.
    pub transactional_id: Option<String>,
    /// Most events consumed but not yet acknowledged by the broker; at the bound the router
    /// stops polling until acknowledgements arrive (backpressure, not buffering).
    pub max_in_flight: usize,
    /// Most events taken per poll round (one offset-tracking unit).
    pub batch_size: usize,
    /// Routing loops in this process, each on its own thread with its own consumer (a member
    /// of the group: the input partitions are split between them, and with other instances')
    /// and its own producer. `max_in_flight` applies to each.
    pub routing_threads: usize,
    /// On SIGTERM: how long to wait for in-flight records before exiting.
    pub shutdown_timeout: HumanDuration,
    /// How long the audit chainer may hold more than half of `max_in_flight` handed audit
    /// records without chaining any before the loops send their audit batches through the
    /// intake topic instead (see the hand-off in the README's audit section).
    pub hand_off_stall: HumanDuration,
    /// How long an `at_least_once` routing loop, and the review join, once subscribed, wait
    /// for this process's audit chainer to be assigned its intake partitions before they start
    /// consuming, so that their first audit records are handed to the chainer rather than sent
    /// through the intake topic. Their group joins go on meanwhile; `0s` does not wait.
    pub chainer_join_wait: HumanDuration,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            guarantee: Guarantee::AtLeastOnce,
            transactional_id: None,
            max_in_flight: 50_000,
            batch_size: 1_000,
            routing_threads: 1,
            shutdown_timeout: HumanDuration::secs(30),
            hand_off_stall: HumanDuration::secs(1),
            chainer_join_wait: HumanDuration::secs(10),
        }
    }
}

/// The model's expected output, against which drift is measured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Expected share of risk scores in each tenth of [0, 1] (ten numbers summing to 1), from
    /// the model's validation data. Without it, no PSI is computed.
    pub baseline_risk: Option<Vec<f64>>,
    /// Expected mean confidence, exported beside the observed mean.
    pub baseline_confidence_mean: Option<f64>,
    /// Events per drift window.
    pub window_events: u64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig { baseline_risk: None, baseline_confidence_mean: None, window_events: 10_000 }
    }
}

/// What audit records show of the input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Extra event fields to copy into the audit snapshot, beyond those the decision read.
    #[serde(default)]
    pub snapshot_fields: Vec<String>,
    /// Fields whose values are replaced by `"[redacted]"` in the snapshot.
    #[serde(default)]
    pub redact_fields: Vec<String>,
}

fn default_group() -> String {
    "tollgate-router".into()
}
fn yes() -> bool {
    true
}
fn default_partitions() -> i32 {
    6
}
fn one_i32() -> i32 {
    1
}

impl RouterConfig {
    /// Loads a configuration file, applies `TOLLGATE__*` environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        tollgate_common::load_file(path)
    }

    /// Parses configuration text (e.g. an embedded default), applies environment overrides and
    /// validates. Relative paths resolve against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        tollgate_common::load_text(text, base_dir)
    }

    /// The transactional id of this instance (the first `exactly_once` routing loop's; the
    /// audit chainer appends `.audit`).
    pub fn transactional_id(&self) -> String {
        self.processing.transactional_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
            format!("{}.{host}", self.kafka.group_id)
        })
    }

    /// The transactional id of routing loop `index`: the instance's for the first loop, so that
    /// adding loops leaves it as it was, and `-<index>` appended for the others. Each loop's
    /// producer needs its own: two producers with one id fence each other.
    pub fn routing_transactional_id(&self, index: usize) -> String {
        match index {
            0 => self.transactional_id(),
            i => format!("{}-{i}", self.transactional_id()),
        }
    }

    /// Resolves a configured path against the configuration file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        tollgate_common::resolve(&self.base_dir, path)
    }
}

#[cfg(test)]
mod tests;

impl tollgate_common::ServiceConfig for RouterConfig {
    fn set_base_dir(&mut self, dir: PathBuf) {
        self.base_dir = dir;
    }

    fn validate(&self) -> Result<(), ConfigError> {
        RouterConfig::validate(self)
    }
}
