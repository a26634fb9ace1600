//! Avro input: one datum of the configured schema per record, plain or in the Confluent wire
//! format (magic byte 0, a big-endian 4-byte schema id, then the datum).

use super::{Body, Decoded};
use crate::fields::{EventFields, FieldRegistry, FieldValue};
use crate::reject::{RejectReason, Rejection};
use apache_avro::types::Value;
use apache_avro::Schema;

/// Avro decoder state: the writer schema and the framing rules.
#[derive(Debug)]
pub struct AvroInput {
    registry: FieldRegistry,
    schema: Schema,
    confluent: bool,
    accepted_ids: Vec<u32>,
}

impl AvroInput {
    pub(super) fn new(registry: FieldRegistry, schema: Schema, confluent: bool, accepted_ids: Vec<u32>) -> Self {
        AvroInput { registry, schema, confluent, accepted_ids }
    }

    pub(super) fn decode<'a>(&self, payload: &'a [u8]) -> Result<Decoded<'a>, Rejection> {
        let mut datum = payload;
        if self.confluent {
            datum = self.strip_confluent_header(payload)?;
        }
        let value = apache_avro::from_avro_datum(&self.schema, &mut datum, None).map_err(|e| {
            Rejection::new(RejectReason::AvroDecode, format!("does not decode with the configured schema: {e}"))
        })?;
        if !datum.is_empty() {
            return Err(Rejection::new(
                RejectReason::AvroDecode,
                format!("{} bytes left over after the datum: not written with the configured schema", datum.len()),
            ));
        }
        let values = self
            .registry
            .paths()
            .iter()
            .map(|path| {
                let mut cur = &value;
                for seg in path.segments() {
                    match field(cur, seg) {
                        Some(next) => cur = next,
                        None => return FieldValue::Missing,
                    }
                }
                scalar(cur)
            })
            .collect();
        Ok(Decoded { fields: EventFields::from_values(values), body: Body::Avro(value) })
    }

    fn strip_confluent_header<'a>(&self, payload: &'a [u8]) -> Result<&'a [u8], Rejection> {
        if payload.len() < 5 || payload[0] != 0 {
            return Err(Rejection::new(
                RejectReason::SchemaMismatch,
                "expected the Confluent wire format: magic byte 0 and a 4-byte schema id",
            ));
        }
        let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
        if !self.accepted_ids.is_empty() && !self.accepted_ids.contains(&id) {
            return Err(Rejection::new(
                RejectReason::SchemaMismatch,
                format!("schema id {id} is not one of the accepted ids {:?}", self.accepted_ids),
            ));
        }
        Ok(&payload[5..])
    }
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

fn field<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    match unwrap_union(v) {
        Value::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        Value::Map(map) => map.get(name),
        _ => None,
    }
}

fn scalar(v: &Value) -> FieldValue<'static> {
    match unwrap_union(v) {
        Value::Null => FieldValue::Missing,
        Value::Boolean(b) => FieldValue::Bool(*b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => FieldValue::Number(f64::from(*i)),
        Value::Long(i)
        | Value::TimeMicros(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimestampNanos(i)
        | Value::LocalTimestampMillis(i)
        | Value::LocalTimestampMicros(i)
        | Value::LocalTimestampNanos(i) => FieldValue::Number(*i as f64),
        Value::Float(f) => FieldValue::Number(f64::from(*f)),
        Value::Double(f) => FieldValue::Number(*f),
        Value::String(s) => FieldValue::Text(s.clone().into()),
        Value::Enum(_, s) => FieldValue::Text(s.clone().into()),
        Value::Uuid(u) => FieldValue::Text(u.to_string().into()),
        _ => FieldValue::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FieldId;

    const SCHEMA: &str = r#"{"type":"record","name":"P","fields":[
        {"name":"event_id","type":"string"},
        {"name":"amount","type":"double"},
        {"name":"country","type":["null","string"],"default":null},
        {"name":"risk","type":"float"}]}"#;

    fn input(confluent: bool, ids: Vec<u32>) -> AvroInput {
        let mut r = FieldRegistry::default();
        for p in ["event_id", "amount", "country", "risk"] {
            r.register(p).unwrap();
        }
        AvroInput::new(r, Schema::parse_str(SCHEMA).unwrap(), confluent, ids)
    }

    fn datum(country: Option<&str>) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let country = match country {
            Some(c) => Value::Union(1, Box::new(Value::String(c.into()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let v = Value::Record(vec![
            ("event_id".into(), Value::String("e7".into())),
            ("amount".into(), Value::Double(99.5)),
            ("country".into(), country),
            ("risk".into(), Value::Float(0.25)),
        ]);
        apache_avro::to_avro_datum(&schema, v).unwrap()
    }

    #[test]
    fn plain_datum_decodes() {
        let bytes = datum(Some("FR"));
        let d = input(false, vec![]).decode(&bytes).unwrap();
        assert_eq!(d.fields.get(FieldId(0)), &FieldValue::Text("e7".into()));
        assert_eq!(d.fields.get(FieldId(1)), &FieldValue::Number(99.5));
        assert_eq!(d.fields.get(FieldId(2)), &FieldValue::Text("FR".into()));
        assert_eq!(d.fields.get(FieldId(3)), &FieldValue::Number(0.25));
        let bytes = datum(None);
        let d = input(false, vec![]).decode(&bytes).unwrap();
        assert_eq!(d.fields.get(FieldId(2)), &FieldValue::Missing);
    }

    #[test]
    fn confluent_framing_is_checked() {
        let mut framed = vec![0, 0, 0, 0, 42];
        framed.extend(datum(Some("FR")));
        assert!(input(true, vec![]).decode(&framed).is_ok());
        assert!(input(true, vec![42]).decode(&framed).is_ok());
        let err = input(true, vec![7]).decode(&framed).unwrap_err();
        assert_eq!(err.reason, RejectReason::SchemaMismatch);
        let mut bad_magic = framed.clone();
        bad_magic[0] = 1;
        assert_eq!(input(true, vec![]).decode(&bad_magic).unwrap_err().reason, RejectReason::SchemaMismatch);
        assert_eq!(input(true, vec![]).decode(&[0, 1]).unwrap_err().reason, RejectReason::SchemaMismatch);
    }

    #[test]
    fn mismatched_bytes_are_rejected() {
        let err = input(false, vec![]).decode(b"{\"event_id\":\"x\"}").unwrap_err();
        assert_eq!(err.reason, RejectReason::AvroDecode);
        let mut long = datum(None);
        long.extend_from_slice(&[1, 2, 3]);
        assert_eq!(input(false, vec![]).decode(&long).unwrap_err().reason, RejectReason::AvroDecode);
    }
}
