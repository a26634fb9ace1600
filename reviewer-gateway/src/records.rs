//! Decoding the records the gateway reads (routed, resolved, escalation, decision and case-state
//! records) into typed values, with the original event as a JSON object whatever its encoding.

mod avro_json;

use apache_avro::Schema;
use avro_json::EventSchema;
use serde_json::{Map, Value};
use std::path::Path;
use tollgate_schemas::{
    AvroBytes, CaseGate, EscalationRecord, EventFormat, RecordFormat, ResolvedEvent, ReviewDecision, RoutedRecord,
};

/// The original event of a record, as a JSON object.
pub type Event = Map<String, Value>;

/// Decodes records whose encoding (JSON or Avro) is recognised by the first byte, and original
/// events that were JSON or Avro input.
pub struct RecordDecoder {
    event_schema: Option<EventSchema>,
    confluent: bool,
}

impl RecordDecoder {
    /// `event_schema`: the input events' Avro schema, when the router's input is Avro.
    pub fn new(event_schema: Option<&Path>, confluent: bool) -> Result<Self, String> {
        let event_schema = match event_schema {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let schema =
                    Schema::parse_str(&text).map_err(|e| format!("{} is not an Avro schema: {e}", path.display()))?;
                Some(EventSchema::new(schema))
            }
            None => None,
        };
        Ok(RecordDecoder { event_schema, confluent })
    }

    /// A routed record from a review topic.
    pub fn routed(&self, bytes: &[u8]) -> Result<RoutedRecord<'static, Event>, String> {
        let record = match RecordFormat::of(bytes) {
            RecordFormat::Json => {
                let r = RoutedRecord::from_json(bytes).map_err(|e| e.to_string())?;
                let event = as_object(r.event.clone())?;
                r.with_event(event)
            }
            RecordFormat::Avro => {
                let r = RoutedRecord::from_avro(bytes).map_err(|e| e.to_string())?;
                let event = self.event(r.event_format, &r.event)?;
                r.with_event(event)
            }
        };
        if record.event_id.is_empty() {
            return Err("the record has no event id".into());
        }
        Ok(record)
    }

    /// A resolved record.
    pub fn resolved(&self, bytes: &[u8]) -> Result<ResolvedEvent<'static, Event>, String> {
        match RecordFormat::of(bytes) {
            RecordFormat::Json => {
                let r = ResolvedEvent::from_json(bytes).map_err(|e| e.to_string())?;
                let event = as_object(r.event.clone()).unwrap_or_default();
                Ok(r.with_event(event))
            }
            RecordFormat::Avro => {
                let r = ResolvedEvent::from_avro(bytes).map_err(|e| e.to_string())?;
                // A rollback's or a timeout's event may be absent; the disposition still counts.
                let event = if r.event.0.is_empty() { Map::new() } else { self.event(r.event_format, &r.event)? };
                Ok(r.with_event(event))
            }
        }
    }

    /// The original event carried as bytes, decoded by its format.
    fn event(&self, format: EventFormat, bytes: &AvroBytes<'_>) -> Result<Event, String> {
        match format {
            EventFormat::Json => {
                as_object(serde_json::from_slice(&bytes.0).map_err(|e| format!("the event is not JSON: {e}"))?)
            }
            EventFormat::Avro => {
                let schema = self.event_schema.as_ref().ok_or("the event is Avro and event.avro_schema is not set")?;
                let mut datum: &[u8] = &bytes.0;
                if self.confluent {
                    datum = datum.get(5..).filter(|_| bytes.0.first() == Some(&0)).ok_or("no Confluent header")?;
                }
                let value = apache_avro::from_avro_datum(schema.schema(), &mut datum, None)
                    .map_err(|e| format!("the event does not decode with event.avro_schema: {e}"))?;
                as_object(schema.json_form(value).map_err(|e| format!("the event has no JSON form: {e}"))?)
            }
        }
    }
}

/// An escalation record.
pub fn escalation(bytes: &[u8]) -> Result<EscalationRecord<'static>, String> {
    EscalationRecord::read(RecordFormat::of(bytes), bytes).map_err(|e| e.to_string())
}

/// A review decision.
pub fn decision(bytes: &[u8]) -> Result<ReviewDecision<'static>, String> {
    ReviewDecision::read(RecordFormat::of(bytes), bytes).map_err(|e| e.to_string())
}

/// A case-state record (always Avro).
pub fn case_gate(bytes: &[u8]) -> Result<CaseGate<'static>, String> {
    CaseGate::read(bytes).map_err(|e| e.to_string())
}

fn as_object(value: Value) -> Result<Event, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("the event is not an object but {}", kind(&other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use tollgate_schemas::{Contribution, Route};

    fn routed<E>(event: E, format: EventFormat) -> RoutedRecord<'static, E> {
        RoutedRecord {
            event_id: "pay-1".into(),
            route: Route::SyncReview,
            rule: "sync-review".into(),
            guardrail: false,
            risk_score: 0.95,
            confidence: 0.9,
            model_version: "m".into(),
            policy_version: "p".into(),
            explanation: vec![Contribution { feature: "amount".into(), contribution: 1.0 }],
            routed_at: 5,
            sla_deadline: Some(10),
            event_format: format,
            event,
        }
    }

    #[test]
    fn routed_records_decode_from_json_and_avro_with_json_or_avro_events() {
        let decoder = RecordDecoder::new(
            Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments/payment.avsc")),
            false,
        )
        .unwrap();
        let event = serde_json::json!({"event_id": "pay-1", "amount": 12.5});
        let mut json = Vec::new();
        routed(&event, EventFormat::Json).write_json(&mut json).unwrap();
        assert_eq!(decoder.routed(&json).unwrap().event["amount"], 12.5);

        let mut avro = Vec::new();
        let raw = serde_json::to_vec(&event).unwrap();
        routed(AvroBytes(Cow::Owned(raw)), EventFormat::Json).write_avro(&mut avro).unwrap();
        assert_eq!(decoder.routed(&avro).unwrap().event["event_id"], "pay-1");

        assert!(decoder.routed(b"{\"event_id\":").is_err());
        assert!(decoder.routed(&[1, 2, 3]).is_err());
        let mut scalar = Vec::new();
        routed(serde_json::json!(5), EventFormat::Json).write_json(&mut scalar).unwrap();
        assert!(decoder.routed(&scalar).unwrap_err().contains("not an object"));
        let mut avro_event = Vec::new();
        routed(AvroBytes(Cow::Borrowed(&b"\x02"[..])), EventFormat::Avro).write_avro(&mut avro_event).unwrap();
        assert!(decoder.routed(&avro_event).is_err(), "a truncated Avro event is an error, not a panic");
    }
}
