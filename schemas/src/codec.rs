//! Embedded Avro schemas and the encode/decode functions for Tollgate's own records.
//!
//! Every record type has two encodings, chosen per deployment: JSON (one object per Kafka
//! record) and Avro (a plain Avro datum of the embedded schema, no container header).
//!
//! The records written for every event are laid out by hand: the routed record's and the audit
//! record's JSON ([`crate::json`]), the audit record's and the changelog entry's Avro
//! (`avro.rs`). The other Avro datums are written and read with `serde_avro_fast`, which walks
//! a record's fields in schema order without an intermediate value tree. The schemas are also
//! parsed by `apache_avro`, whose [`Schema`] is what this crate hands out and what the tests use
//! as the reference encoder.

use crate::audit::AuditRecord;
use crate::decision::ReviewDecision;
use crate::gateway::CaseGate;
use crate::review::{EscalationRecord, PendingChange, ResolvedEvent};
use crate::routed::{AvroBytes, RoutedRecord};
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
struct Contract {
    text: &'static str,
    reference: OnceLock<Schema>,
    fast: OnceLock<serde_avro_fast::Schema>,
}

impl Contract {
    const fn new(text: &'static str) -> Contract {
        Contract { text, reference: OnceLock::new(), fast: OnceLock::new() }
    }

    // The schema texts are compiled in and covered by tests, so parsing cannot fail at run time.
    fn schema(&self) -> &Schema {
        self.reference.get_or_init(|| Schema::parse_str(self.text).expect("embedded Avro schema is valid"))
    }

    fn fast(&self) -> &serde_avro_fast::Schema {
        self.fast.get_or_init(|| self.text.parse().expect("embedded Avro schema is valid"))
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

fn decode_avro<'a, T: Deserialize<'a>>(contract: &Contract, bytes: &'a [u8]) -> Result<T, CodecError> {
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
        self.lay_json(event.as_bytes(), out);
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
mod tests {
    use super::*;
    use crate::routed::{Contribution, EventFormat};
    use crate::Route;
    use std::borrow::Cow;

    /// The fast encoding of `value` is byte for byte what the reference library writes, and the
    /// reference library reads it as a datum of the schema. (Each test reads it back with this
    /// crate's decoder too.)
    fn same_as_reference<T: Serialize + std::fmt::Debug>(contract: &Contract, value: &T) {
        let mut fast = Vec::new();
        encode_avro(contract, value, &mut fast).unwrap();
        let mut reference = Vec::new();
        apache_avro::write_avro_datum_ref(contract.schema(), value, &mut reference).unwrap();
        assert_eq!(fast, reference, "{value:?}");
        apache_avro::from_avro_datum(contract.schema(), &mut fast.as_slice(), None).unwrap();
    }

    fn routed<E>(event: E) -> RoutedRecord<'static, E> {
        RoutedRecord {
            event_id: "evt-1".into(),
            route: Route::SyncReview,
            rule: "sync-review".into(),
            guardrail: false,
            risk_score: 0.93,
            confidence: 0.7,
            model_version: "fraud-v3".into(),
            policy_version: "2026.11.1".into(),
            explanation: vec![Contribution { feature: "amount".into(), contribution: 1.5 }],
            routed_at: 1_790_000_000_000,
            sla_deadline: Some(1_790_000_000_000 + 1_800_000),
            event_format: EventFormat::Json,
            event,
        }
    }

    #[test]
    fn embedded_schemas_parse() {
        assert_eq!(routed_schema().name().unwrap().fullname(None), "io.tollgate.v1.RoutedEvent");
        assert_eq!(audit_schema().name().unwrap().fullname(None), "io.tollgate.v1.AuditRecord");
    }

    #[test]
    fn routed_avro_round_trip() {
        let original = br#"{"event_id":"evt-1","amount":12.5}"#;
        let rec = routed(AvroBytes(Cow::Borrowed(&original[..])));
        let mut buf = Vec::new();
        rec.write_avro(&mut buf).unwrap();
        same_as_reference(&ROUTED, &rec.clone().with_event(AvroBytes(Cow::Owned(original.to_vec()))));
        let back = RoutedRecord::from_avro(&buf).unwrap();
        assert_eq!(back.event.0.as_ref(), &original[..]);
        assert_eq!(back.route, Route::SyncReview);
        assert_eq!(back.sla_deadline, rec.sla_deadline);
        assert_eq!(back.explanation, rec.explanation);
        assert_eq!(back.event_id, "evt-1");
    }

    #[test]
    fn routed_avro_without_deadline() {
        let mut rec = routed(AvroBytes(Cow::Borrowed(&b"x"[..])));
        rec.sla_deadline = None;
        rec.route = Route::AutoCommit;
        let mut buf = Vec::new();
        rec.write_avro(&mut buf).unwrap();
        same_as_reference(&ROUTED, &rec);
        let back = RoutedRecord::from_avro(&buf).unwrap();
        assert_eq!(back.sla_deadline, None);
        assert_eq!(back.route, Route::AutoCommit);
    }

    #[test]
    fn routed_json_embeds_the_event_as_json() {
        let event: serde_json::Value = serde_json::json!({"event_id": "evt-1", "amount": 12.5});
        let rec = routed(&event);
        let mut buf = Vec::new();
        rec.write_json(&mut buf).unwrap();
        let back = RoutedRecord::from_json(&buf).unwrap();
        assert_eq!(back.event, event);
        assert_eq!(back.route, Route::SyncReview);
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains(r#""route":"sync_review""#), "{text}");
    }

    #[test]
    fn an_embedded_event_text_encodes_as_the_event_value_would() {
        // Keys in sorted order, as `serde_json::Value` writes them.
        let text = r#"{"amount":12.5,"card":{"country":"DE"},"event_id":"evt-1"}"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let (mut spliced, mut serialized) = (Vec::new(), Vec::new());
        routed(()).write_json_with_event(text, &mut spliced);
        routed(&value).write_json(&mut serialized).unwrap();
        assert_eq!(String::from_utf8(spliced).unwrap(), String::from_utf8(serialized).unwrap());
    }

    /// A routing audit record with every kind of field set.
    fn audit_record() -> AuditRecord<'static> {
        AuditRecord {
            event_id: "evt-9".into(),
            timestamp: "2026-11-21T06:00:00.000Z".into(),
            actor: "policy".into(),
            actor_role: None,
            action: crate::AuditAction::Route.as_str().into(),
            decision: "auto_commit".into(),
            rule: Some("default".into()),
            guardrail: false,
            policy_version: Some("v1".into()),
            model_version: Some("m1".into()),
            risk_score: Some(0.1),
            confidence: Some(0.95),
            explanation: vec![],
            input_snapshot: r#"{"amount":1}"#.into(),
            rationale: None,
            sla_expected_ms: None,
            sla_actual_ms: None,
            source_topic: "payments".into(),
            source_partition: 3,
            source_offset: 42,
            chain_seq: None,
            chain_prev: None,
            chain_hash: None,
        }
    }

    #[test]
    fn audit_round_trips_in_both_formats() {
        let rec = audit_record();
        same_as_reference(&AUDIT, &rec);
        let mut sealed = AuditRecord { actor_role: Some("fraud_analyst".into()), ..rec.clone() };
        sealed.seal(3, crate::audit::GENESIS);
        same_as_reference(&AUDIT, &sealed);
        let mut buf = Vec::new();
        sealed.write(RecordFormat::Avro, &mut buf).unwrap();
        assert_eq!(AuditRecord::read(RecordFormat::Avro, &buf).unwrap(), sealed);
        for format in [RecordFormat::Json, RecordFormat::Avro] {
            let mut buf = Vec::new();
            rec.write(format, &mut buf).unwrap();
            assert_eq!(AuditRecord::read(format, &buf).unwrap(), rec, "{format:?}");
        }
    }

    #[test]
    fn audit_records_are_read_borrowing_their_text_and_optional_fields_may_be_absent() {
        let rec = AuditRecord { rationale: Some("said \"no\"".into()), ..audit_record() };
        for format in [RecordFormat::Json, RecordFormat::Avro] {
            let mut buf = Vec::new();
            rec.write(format, &mut buf).unwrap();
            let read = AuditRecord::read_borrowed(format, &buf).unwrap();
            assert_eq!(read, rec, "{format:?}");
            assert!(matches!(read.event_id, Cow::Borrowed(_)), "{format:?}");
            assert!(matches!(read.rule, Some(Cow::Borrowed(_))), "{format:?}");
        }
        let minimal = br#"{"event_id":"e","timestamp":"t","actor":"a","action":"route","decision":"d","guardrail":false,"explanation":[],"input_snapshot":"{}","source_topic":"s","source_partition":0,"source_offset":1}"#;
        let read = AuditRecord::read(RecordFormat::Json, minimal).unwrap();
        assert_eq!((read.rule, read.chain_hash, read.actor_role), (None, None, None));
        assert!(AuditRecord::read(RecordFormat::Json, b"{\"event_id\":\"\xff\"}").is_err());
    }

    #[test]
    fn decisions_round_trip_and_json_may_omit_optional_fields() {
        use crate::decision::ReviewAction;
        let d = ReviewDecision {
            decision_id: Some("d-1".into()),
            event_id: "evt-3".into(),
            reviewer_id: "ana".into(),
            reviewer_role: "fraud_analyst".into(),
            action: ReviewAction::Reject,
            rationale: "card reported stolen".into(),
            decided_at: 1_790_000_100_000,
            second_signoff: Some("ben".into()),
        };
        same_as_reference(&DECISION, &d);
        same_as_reference(&DECISION, &ReviewDecision { decision_id: None, second_signoff: None, ..d.clone() });
        for format in [RecordFormat::Json, RecordFormat::Avro] {
            let mut buf = Vec::new();
            d.write(format, &mut buf).unwrap();
            assert_eq!(ReviewDecision::read(format, &buf).unwrap(), d, "{format:?}");
        }
        let minimal = br#"{"event_id":"e","reviewer_id":"r","reviewer_role":"x","action":"escalate","decided_at":5,"decision_id":null}"#;
        let d = ReviewDecision::read(RecordFormat::Json, minimal).unwrap();
        assert_eq!((d.action, d.rationale.as_ref(), d.second_signoff.as_deref()), (ReviewAction::Escalate, "", None));
        assert_eq!(d.fingerprint(), "r|escalate|5");
        assert!(ReviewDecision::read(RecordFormat::Json, br#"{"event_id":"e","action":"maybe"}"#).is_err());
    }

    #[test]
    fn review_records_round_trip() {
        use crate::decision::ReviewAction;
        use crate::review::{ChangeState, ReviewOutcome};
        let change = PendingChange {
            event_id: "e".into(),
            state: ChangeState::Pending,
            queue: Route::SyncReview,
            revision: 3,
            tier: 2,
            held: false,
            info_requested: true,
            post_verify: false,
            risk_score: 0.93,
            confidence: 0.7,
            routed_at: 1,
            deadline: 2,
            policy_version: "p".into(),
            model_version: "m".into(),
            rule: "r".into(),
            applied: vec!["id:d1".into()],
            resolved_at: None,
            event_format: EventFormat::Json,
            event: AvroBytes(Cow::Borrowed(b"{\"a\":1}")),
        };
        let mut buf = Vec::new();
        change.write(&mut buf);
        assert_eq!(PendingChange::read(&buf).unwrap(), change);
        same_as_reference(&PENDING_CHANGE, &change);
        same_as_reference(
            &PENDING_CHANGE,
            &PendingChange { state: ChangeState::Resolved, resolved_at: Some(9), ..change.clone() },
        );

        let resolved = ResolvedEvent {
            event_id: "e".into(),
            queue: Route::AsyncReview,
            rule: "r".into(),
            recommendation: ReviewOutcome::Rejected,
            action: Some(ReviewAction::Approve),
            outcome: ReviewOutcome::Approved,
            actor: "ana".into(),
            actor_role: Some("fraud_analyst".into()),
            rationale: "known customer".into(),
            second_signoff: None,
            overridden: true,
            review_latency_ms: 60_000,
            sla_met: true,
            tier: 1,
            decided_at: 3,
            rollback: false,
            risk_score: 0.8,
            confidence: 0.7,
            policy_version: "p".into(),
            model_version: "m".into(),
            event_format: EventFormat::Json,
            event: AvroBytes(Cow::Borrowed(b"{}")),
        };
        let mut buf = Vec::new();
        resolved.write_avro(&mut buf).unwrap();
        assert_eq!(ResolvedEvent::from_avro(&buf).unwrap(), resolved);
        same_as_reference(&RESOLVED, &resolved);
        let timeout = ResolvedEvent { action: None, actor_role: None, ..resolved.clone() };
        let mut buf = Vec::new();
        timeout.write_avro(&mut buf).unwrap();
        assert_eq!(ResolvedEvent::from_avro(&buf).unwrap().action, None);
        same_as_reference(&RESOLVED, &timeout);
        let json = timeout.clone().with_event(serde_json::json!({"amount": 5}));
        let mut buf = Vec::new();
        json.write_json(&mut buf).unwrap();
        assert_eq!(ResolvedEvent::from_json(&buf).unwrap().event["amount"], 5);

        let esc = EscalationRecord {
            event_id: "e".into(),
            queue: Route::SyncReview,
            from_tier: 1,
            to_tier: 2,
            age_ms: 1_800_000,
            actor: "policy_timeout".into(),
            held: false,
            at: 4,
            deadline: Some(5),
        };
        same_as_reference(&ESCALATION, &esc);
        same_as_reference(&ESCALATION, &EscalationRecord { deadline: None, ..esc.clone() });
        for format in [RecordFormat::Json, RecordFormat::Avro] {
            let mut buf = Vec::new();
            esc.write(format, &mut buf).unwrap();
            assert_eq!(EscalationRecord::read(format, &buf).unwrap(), esc);
        }
    }

    #[test]
    fn sealing_while_writing_gives_what_sealing_then_writing_gives() {
        let base = AuditRecord {
            // A quote to escape and a contribution, beside the fixture's fields.
            event_id: "evt-\"9\"".into(),
            explanation: vec![crate::Contribution { feature: "amount".into(), contribution: 1.25 }],
            ..audit_record()
        };
        for format in [RecordFormat::Json, RecordFormat::Avro] {
            let mut expected = base.clone();
            expected.seal(7, crate::audit::GENESIS);
            let mut want = Vec::new();
            expected.write(format, &mut want).unwrap();
            let mut got = Vec::new();
            let mut record = base.clone();
            let hash = record.seal_and_write(7, crate::audit::GENESIS, format, &mut got).unwrap();
            assert_eq!(got, want, "{format:?}");
            assert_eq!(Some(hash.as_str()), expected.chain_hash.as_deref());
            assert_eq!(record, expected);
            assert_eq!(AuditRecord::read(format, &got).unwrap().digest(), hash);
        }
    }

    #[test]
    fn case_gates_round_trip() {
        use crate::gateway::{Claim, PendingSignoff, SignoffAction};
        let empty = CaseGate { event_id: "e".into(), revision: 1, claim: None, signoff: None };
        let full = CaseGate {
            event_id: "e".into(),
            revision: 7,
            claim: Some(Claim { reviewer_id: "ana".into(), reviewer_role: "fraud_analyst".into(), expires_at: 9 }),
            signoff: Some(PendingSignoff {
                decision_id: "ana/k1".into(),
                reviewer_id: "ana".into(),
                reviewer_role: "fraud_analyst".into(),
                action: SignoffAction::Reject,
                rationale: "stolen card".into(),
                at: 8,
            }),
        };
        for gate in [empty, full] {
            same_as_reference(&CASE_GATE, &gate);
            let mut buf = Vec::new();
            gate.write(&mut buf).unwrap();
            assert_eq!(CaseGate::read(&buf).unwrap(), gate);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(RoutedRecord::from_avro(&[0xff, 0xff, 0xff]).is_err());
        assert!(RoutedRecord::from_json(b"{").is_err());
        assert!(AuditRecord::read(RecordFormat::Avro, &[]).is_err());
    }
}
