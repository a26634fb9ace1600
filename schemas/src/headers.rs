//! Kafka header names Tollgate sets on the records it produces.
//!
//! Headers let a consumer filter or inspect a record without decoding its payload.

/// Route of a routed record (`auto_commit`, `async_review`, ...).
pub const ROUTE: &str = "tollgate.route";
/// Version string of the policy that routed the record.
pub const POLICY_VERSION: &str = "tollgate.policy.version";
/// Version of the model whose score the routing used.
pub const MODEL_VERSION: &str = "tollgate.model.version";
/// Audit intake records that batch several audit records: how many (decimal text). See
/// [`crate::intake`].
pub const AUDIT_BATCH: &str = "tollgate.audit.batch";
/// Changelog states written by the review join: which running join wrote it (an id drawn at
/// start-up), so the writer can pass over its own states when it reads them back.
pub const STATE_WRITER: &str = "tollgate.state.writer";

/// Dead letters: short machine-readable reason (a fixed set, the same as the metric label).
pub const ERROR_REASON: &str = "tollgate.error.reason";
/// Dead letters: human-readable description of what was wrong.
pub const ERROR_MESSAGE: &str = "tollgate.error.message";
/// Dead letters: topic the rejected record was consumed from.
pub const SOURCE_TOPIC: &str = "tollgate.source.topic";
/// Dead letters: partition the rejected record was consumed from (decimal text).
pub const SOURCE_PARTITION: &str = "tollgate.source.partition";
/// Dead letters: offset of the rejected record (decimal text).
pub const SOURCE_OFFSET: &str = "tollgate.source.offset";
