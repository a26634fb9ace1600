//! The contracts of every record Tollgate reads and writes.
//!
//! # Layout
//! - [`route`]: the four routes an event can take.
//! - [`routed`]: the record published on a route topic ([`RoutedRecord`]).
//! - [`audit`]: the audit-trail record ([`AuditRecord`]).
//! - [`decision`]: a reviewer's decision ([`ReviewDecision`]).
//! - [`review`]: the pending-review changelog, resolved outcomes and escalations.
//! - [`gateway`]: the reviewer gateway's state of a case ([`CaseGate`]).
//! - [`intake`]: many audit records in one audit intake record ([`intake::AuditBatch`]).
//! - [`unsealed`]: audit records laid out up to their chain fields, for a chainer in the same
//!   process ([`unsealed::UnsealedBatch`]).
//! - [`headers`]: Kafka header names Tollgate sets, including the dead-letter headers.
//! - [`codec`]: the embedded Avro schemas and the JSON/Avro encode and decode functions.
//! - [`json`]: the laid-out JSON encodings of the records written per event or decision.
//!
//! This crate depends on neither tokio nor rdkafka: it is plain data, usable by any producer or
//! consumer of Tollgate's topics.

pub mod audit;
mod avro;
pub mod codec;
pub mod decision;
#[cfg(test)]
mod fixtures;
pub mod gateway;
pub mod headers;
pub mod intake;
pub mod json;
pub mod review;
pub mod route;
pub mod routed;
pub mod unsealed;

pub use audit::{AuditAction, AuditRecord};
pub use codec::{CodecError, RecordFormat};
pub use decision::{ReviewAction, ReviewDecision};
pub use gateway::{CaseGate, Claim, PendingSignoff, SignoffAction};
pub use review::{ChangeState, EscalationRecord, PendingChange, ResolvedEvent, ReviewOutcome};
pub use route::Route;
pub use routed::AvroBytes;
pub use routed::{Contribution, EventFormat, RoutedRecord, ScoreTexts};
