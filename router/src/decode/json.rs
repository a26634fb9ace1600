//! JSON input: one object per record.

use super::{Body, Decoded};
use crate::fields::{EventFields, FieldRegistry, FieldValue};
use crate::reject::{RejectReason, Rejection};
use serde_json::value::RawValue;
use serde_json::Value;

pub(super) fn decode<'a>(registry: &FieldRegistry, payload: &'a [u8]) -> Result<Decoded<'a>, Rejection> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| Rejection::new(RejectReason::MalformedJson, format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Rejection::new(RejectReason::MalformedJson, "the event must be a JSON object"));
    }
    // Parsing succeeded above, so borrowing the same bytes as a raw value cannot fail; the raw
    // value lets the routed record embed the event without re-serializing it.
    let raw: &RawValue = serde_json::from_slice(payload)
        .map_err(|e| Rejection::new(RejectReason::MalformedJson, format!("invalid JSON: {e}")))?;
    let values = registry
        .paths()
        .iter()
        .map(|path| {
            let mut cur = &value;
            for seg in path.segments() {
                match cur.get(seg) {
                    Some(next) => cur = next,
                    None => return FieldValue::Missing,
                }
            }
            scalar(cur)
        })
        .collect();
    Ok(Decoded { fields: EventFields::from_values(values), body: Body::Json(raw) })
}

fn scalar(v: &Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Missing,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => n.as_f64().map_or(FieldValue::Other, FieldValue::Number),
        Value::String(s) => FieldValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => FieldValue::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> FieldRegistry {
        let mut r = FieldRegistry::default();
        for p in ["event_id", "amount", "card.country", "flag", "nested"] {
            r.register(p).unwrap();
        }
        r
    }

    #[test]
    fn extracts_nested_and_scalar_fields() {
        let r = registry();
        let payload = br#"{"event_id":"e1","amount":12.5,"card":{"country":"DE"},"flag":true,"nested":{"a":1}}"#;
        let d = decode(&r, payload).unwrap();
        let get = |p: &str| {
            d.fields.get(r.paths().iter().position(|x| x.as_str() == p).map(crate::fields::FieldId).unwrap()).clone()
        };
        assert_eq!(get("event_id"), FieldValue::Text("e1".into()));
        assert_eq!(get("amount"), FieldValue::Number(12.5));
        assert_eq!(get("card.country"), FieldValue::Text("DE".into()));
        assert_eq!(get("flag"), FieldValue::Bool(true));
        assert_eq!(get("nested"), FieldValue::Other);
        match d.body {
            Body::Json(raw) => assert_eq!(raw.get().as_bytes(), payload),
            Body::Avro(_) => panic!("expected a JSON body"),
        }
    }

    #[test]
    fn absent_and_null_are_missing() {
        let r = registry();
        let d = decode(&r, br#"{"event_id":null}"#).unwrap();
        assert_eq!(d.fields.get(crate::fields::FieldId(0)), &FieldValue::Missing);
        assert_eq!(d.fields.get(crate::fields::FieldId(2)), &FieldValue::Missing);
    }

    #[test]
    fn malformed_input_is_rejected_with_a_reason() {
        let r = registry();
        for bad in [&b"{"[..], b"[1,2]", b"\"text\"", b"{\"a\":NaN}", b"\xff\xfe"] {
            let err = decode(&r, bad).unwrap_err();
            assert_eq!(err.reason, RejectReason::MalformedJson, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
