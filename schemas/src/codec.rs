//! Embedded Avro schemas and the encode/decode functions for Tollgate's own records.
//!
//! Every record type has two encodings, chosen per deployment: JSON (one object per Kafka
//! record) and Avro (a plain Avro datum of the embedded schema, no container header).
//!
//! The records written for every event or decision are laid out by hand: the routed record's,
//! the audit record's and the resolved record's JSON ([`crate::json`]), the audit record's and
//! the changelog entry's Avro (`avro.rs`). The other Avro datums are written and read with `serde_avro_fast`, which walks
//! a record's fields in schema order without an intermediate value tree. The schemas are also
//! parsed by `apache_avro`, whose [`Schema`] is what this crate hands out and what the tests use
//! as the reference encoder.

use crate::audit::AuditRecord;
use crate::decision::ReviewDecision;
use crate::gateway::CaseGate;
use crate::review::{EscalationRecord, PendingChange, ResolvedEvent};
use crate::routed::{AvroBytes, RoutedRecord, ScoreTexts};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// Avro schema text of the routed record (`io.tollgate.v1.RoutedEvent`).
pub const ROUTED_EVENT_AVSC: &str = include_str!("../avro/routed_event.avsc");
/// Avro schema text of the audit record (`io.tollgate.v1.AuditRecord`).
pub const AUDIT_RECORD_AVSC: &str = include_str!("../avro/audit_record.avsc");
/// Avro schema text of the review decision (`io.tollgate.v1.ReviewDecision`).
pub const REVIEW_DECISION_AVSC: &str = include_str!("../avro/review_decision.avsc");
/// Avro schema text of the pending-review changelog entry (`io.tollgate.v1.PendingChange`).
pub const PENDING_CHANGE_AVSC: &str = include_str!("../avro/pending_change.avsc");
/// Avro schema text of the resolved record (`io.tollgate.v1.ResolvedEvent`).
pub const RESOLVED_EVENT_AVSC: &str = include_str!("../avro/resolved_event.avsc");
/// Avro schema text of the escalation record (`io.tollgate.v1.Escalation`).
pub const ESCALATION_AVSC: &str = include_str!("../avro/escalation.avsc");

/// Avro schema text of the gateway's case state (`io.tollgate.v1.CaseGate`).
pub const CASE_GATE_AVSC: &str = include_str!("../avro/case_gate.avsc");

/// Encoding of the records Tollgate writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// One JSON object per record.
    #[default]
    Json,
    /// One Avro datum per record, of the schema embedded in this crate.
    Avro,
}

impl RecordFormat {
    /// The encoding of a record Tollgate wrote: JSON records are objects, so they start with
    /// `{`; everything else is an Avro datum.
    pub fn of(bytes: &[u8]) -> RecordFormat {
        if bytes.first() == Some(&b'{') {
            RecordFormat::Json
        } else {
            RecordFormat::Avro
        }
    }
}

/// Errors encoding or decoding a Tollgate record.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("JSON encoding or decoding failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Avro encoding failed: {0}")]
    AvroWrite(#[from] serde_avro_fast::ser::SerError),
    #[error("Avro decoding failed: {0}")]
    AvroRead(#[from] serde_avro_fast::de::DeError),
}

/// One embedded contract, parsed for both Avro libraries.
pub(crate) struct Contract {
    text: Text,
    reference: OnceLock<Schema>,
    fast: OnceLock<serde_avro_fast::Schema>,
}

/// A contract's schema text: an embedded file, or composed from embedded files.
enum Text {
    File(&'static str),
    Composed(fn() -> String),
}

impl Contract {
    const fn new(text: &'static str) -> Contract {
        Contract { text: Text::File(text), reference: OnceLock::new(), fast: OnceLock::new() }
    }

    /// A contract whose schema is built from others' (parsed once, on first use).
    pub(crate) const fn composed(text: fn() -> String) -> Contract {
        Contract { text: Text::Composed(text), reference: OnceLock::new(), fast: OnceLock::new() }
    }

    fn text(&self) -> std::borrow::Cow<'static, str> {
        match self.text {
            Text::File(t) => t.into(),
            Text::Composed(f) => f().into(),
        }
    }

    // The schema texts are compiled in and covered by tests, so parsing cannot fail at run time.
    pub(crate) fn schema(&self) -> &Schema {
        self.reference.get_or_init(|| Schema::parse_str(&self.text()).expect("embedded Avro schema is valid"))
    }

    fn fast(&self) -> &serde_avro_fast::Schema {
        self.fast.get_or_init(|| self.text().parse().expect("embedded Avro schema is valid"))
    }
}

static ROUTED: Contract = Contract::new(ROUTED_EVENT_AVSC);
static AUDIT: Contract = Contract::new(AUDIT_RECORD_AVSC);
static DECISION: Contract = Contract::new(REVIEW_DECISION_AVSC);
static PENDING_CHANGE: Contract = Contract::new(PENDING_CHANGE_AVSC);
static RESOLVED: Contract = Contract::new(RESOLVED_EVENT_AVSC);
static ESCALATION: Contract = Contract::new(ESCALATION_AVSC);
static CASE_GATE: Contract = Contract::new(CASE_GATE_AVSC);

/// The parsed routed-record schema.
pub fn routed_schema() -> &'static Schema {
    ROUTED.schema()
}

/// The parsed audit-record schema.
pub fn audit_schema() -> &'static Schema {
    AUDIT.schema()
}

/// The parsed review-decision schema.
pub fn decision_schema() -> &'static Schema {
    DECISION.schema()
}

/// The parsed changelog-entry schema.
pub fn pending_change_schema() -> &'static Schema {
    PENDING_CHANGE.schema()
}

/// The parsed resolved-record schema.
pub fn resolved_schema() -> &'static Schema {
    RESOLVED.schema()
}

/// The parsed escalation-record schema.
pub fn escalation_schema() -> &'static Schema {
    ESCALATION.schema()
}

/// The parsed gateway case-state schema.
pub fn case_gate_schema() -> &'static Schema {
    CASE_GATE.schema()
}

fn encode_avro<T: Serialize>(contract: &Contract, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut config = serde_avro_fast::ser::SerializerConfig::new(contract.fast());
    serde_avro_fast::to_datum(value, out, &mut config)?;
    Ok(())
}

pub(crate) fn decode_avro<'a, T: Deserialize<'a>>(contract: &Contract, bytes: &'a [u8]) -> Result<T, CodecError> {
    Ok(serde_avro_fast::from_datum_slice(bytes, contract.fast())?)
}

/// Appends `value` in `format` (Avro: a datum of `schema`).
fn write_in<T: Serialize>(
    format: RecordFormat,
    contract: &Contract,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    match format {
        RecordFormat::Json => Ok(serde_json::to_writer(out, value)?),
        RecordFormat::Avro => encode_avro(contract, value, out),
    }
}

/// JSON text checked as UTF-8 once, for `serde_json::from_str`: reading from a slice would
/// check every string on its own, which costs more.
fn json_text(bytes: &[u8]) -> Result<&str, CodecError> {
    std::str::from_utf8(bytes).map_err(|e| CodecError::Json(serde::de::Error::custom(format!("not UTF-8: {e}"))))
}

/// Decodes a value written in `format` (Avro: a datum of `schema`), borrowing from `bytes` what
/// the type borrows.
fn read_in<'a, T: Deserialize<'a>>(
    format: RecordFormat,
    contract: &Contract,
    bytes: &'a [u8],
) -> Result<T, CodecError> {
    match format {
        RecordFormat::Json => Ok(serde_json::from_str(json_text(bytes)?)?),
        RecordFormat::Avro => decode_avro(contract, bytes),
    }
}

impl<E: Serialize> RoutedRecord<'_, E> {
    /// Appends the JSON encoding to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, self)?;
        Ok(())
    }
}

impl RoutedRecord<'_, ()> {
    /// Appends the JSON encoding with `event` as the event, unchanged. `event` must be valid
    /// JSON text (the router embeds the input record it has just validated): nothing here
    /// checks it again, which is the point.
    pub fn write_json_with_event(&self, event: &str, out: &mut Vec<u8>) {
        self.lay_json(event.as_bytes(), ScoreTexts::default(), crate::json::Formatted, out);
    }

    /// As [`RoutedRecord::write_json_with_event`], with the risk score and confidence written
    /// as `scores` gives them: the text the input wrote each as, when they were read from a
    /// JSON input. Each must be a JSON number whose value is the record's (unchecked, as the
    /// event is).
    pub fn write_json_with_event_and_scores(&self, event: &str, scores: ScoreTexts<'_>, out: &mut Vec<u8>) {
        self.lay_json(event.as_bytes(), scores, crate::json::Formatted, out);
    }

    /// As [`RoutedRecord::write_json_with_event_and_scores`], with the floats it formats
    /// taken from, or kept in, `floats`: the same bytes, for an event whose audit record
    /// writes the same floats in JSON too.
    pub fn write_json_with_floats(
        &self,
        event: &str,
        scores: ScoreTexts<'_>,
        floats: &mut crate::json::FloatTexts,
        out: &mut Vec<u8>,
    ) {
        self.lay_json(event.as_bytes(), scores, floats, out);
    }
}

impl RoutedRecord<'_, AvroBytes<'_>> {
    /// Appends the Avro encoding to `out`.
    pub fn write_avro(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        encode_avro(&ROUTED, self, out)
    }
}

impl RoutedRecord<'static, serde_json::Value> {
    /// Decodes a JSON-encoded routed record.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl RoutedRecord<'static, AvroBytes<'static>> {
    /// Decodes an Avro-encoded routed record.
    pub fn from_avro(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_avro(&ROUTED, bytes)
    }
}

impl AuditRecord<'_> {
    /// Appends the record in `format` to `out`.
    pub fn write(&self, format: RecordFormat, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match format {
            RecordFormat::Json => self.lay_json(out),
            RecordFormat::Avro => self.lay_avro(out),
        }
        Ok(())
    }

    /// Appends the record as the router writes it to the audit intake topic: an Avro datum,
    /// whatever the output format. The intake is read only by the audit chainer, which decodes
    /// either encoding ([`RecordFormat::of`]) and writes the chained record in the output format;
    /// Avro has nothing to escape and no number to format, so it is the cheaper hop.
    pub fn write_intake(&self, out: &mut Vec<u8>) {
        self.lay_avro(out);
    }

    /// As [`AuditRecord::write_intake`], with `snapshot` (JSON text) in place of
    /// `input_snapshot`: a snapshot written into a byte buffer from text is not checked as
    /// UTF-8 again (about 1% of an event's routing, `BENCHMARKS.md`, session 28).
    pub fn write_intake_with_snapshot(&self, snapshot: &[u8], out: &mut Vec<u8>) {
        debug_assert!(std::str::from_utf8(snapshot).is_ok(), "the snapshot is UTF-8 text");
        self.lay_avro_with(Some(snapshot), out);
    }
}

impl AuditRecord<'static> {
    /// Decodes an audit record written in `format`.
    pub fn read(format: RecordFormat, bytes: &[u8]) -> Result<Self, CodecError> {
        AuditRecord::read_borrowed(format, bytes).map(AuditRecord::into_owned)
    }
}

impl<'a> AuditRecord<'a> {
    /// Decodes an audit record written in `format`, borrowing its text from `bytes` where it
    /// has no escapes (the audit chainer reads every record once and writes it on at once).
    pub fn read_borrowed(format: RecordFormat, bytes: &'a [u8]) -> Result<Self, CodecError> {
        read_in(format, &AUDIT, bytes)
    }
}

impl ReviewDecision<'_> {
    /// Appends the decision in `format` to `out`.
    pub fn write(&self, format: RecordFormat, out: &mut Vec<u8>) -> Result<(), CodecError> {
        write_in(format, &DECISION, self, out)
    }
}

impl ReviewDecision<'static> {
    /// Decodes a decision written in `format`.
    pub fn read(format: RecordFormat, bytes: &[u8]) -> Result<Self, CodecError> {
        ReviewDecision::read_borrowed(format, bytes).map(ReviewDecision::into_owned)
    }
}

impl<'a> ReviewDecision<'a> {
    /// Decodes a decision written in `format`, borrowing its text from `bytes` where it has no
    /// escapes (the review join reads a decision, applies it and lets it go).
    pub fn read_borrowed(format: RecordFormat, bytes: &'a [u8]) -> Result<Self, CodecError> {
        read_in(format, &DECISION, bytes)
    }
}

impl PendingChange<'_> {
    /// Appends the Avro encoding (the changelog is always Avro).
    pub fn write(&self, out: &mut Vec<u8>) {
        self.lay_avro(out);
    }
}

impl PendingChange<'static> {
    /// Decodes a changelog entry.
    pub fn read(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_avro(&PENDING_CHANGE, bytes)
    }
}

impl<E: Serialize> ResolvedEvent<'_, E> {
    /// Appends the JSON encoding to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        Ok(serde_json::to_writer(out, self)?)
    }
}

impl ResolvedEvent<'_, ()> {
    /// Appends the JSON encoding with `event` as the event, unchanged. `event` must be valid
    /// JSON text (the review join embeds an event it has checked): nothing here checks it again.
    pub fn write_json_with_event(&self, event: &str, out: &mut Vec<u8>) {
        self.lay_json(event.as_bytes(), out);
    }
}

impl ResolvedEvent<'_, AvroBytes<'_>> {
    /// Appends the Avro encoding to `out`.
    pub fn write_avro(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        encode_avro(&RESOLVED, self, out)
    }
}

impl ResolvedEvent<'static, serde_json::Value> {
    /// Decodes a JSON-encoded resolved record.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl ResolvedEvent<'static, AvroBytes<'static>> {
    /// Decodes an Avro-encoded resolved record.
    pub fn from_avro(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_avro(&RESOLVED, bytes)
    }
}

impl EscalationRecord<'_> {
    /// Appends the record in `format` to `out`.
    pub fn write(&self, format: RecordFormat, out: &mut Vec<u8>) -> Result<(), CodecError> {
        write_in(format, &ESCALATION, self, out)
    }
}

impl EscalationRecord<'static> {
    /// Decodes an escalation record written in `format`.
    pub fn read(format: RecordFormat, bytes: &[u8]) -> Result<Self, CodecError> {
        read_in(format, &ESCALATION, bytes)
    }
}

impl CaseGate<'_> {
    /// Appends the Avro encoding (the gateway's state topic is always Avro).
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        encode_avro(&CASE_GATE, self, out)
    }
}

impl CaseGate<'static> {
    /// Decodes a gateway case state.
    pub fn read(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_avro(&CASE_GATE, bytes)
    }
}

#[cfg(test)]
mod tests;
