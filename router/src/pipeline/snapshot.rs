//! The audit record's input snapshot: a JSON object of the event fields the decision read, with
//! configured fields redacted.
//!
//! Written straight from the extracted fields, once per event: field names come ready-made, and
//! text values are copied as they are unless they hold something to escape. An event's
//! top-level members that the snapshot would write as they stand come first, copied in the runs
//! the decoder recorded ([`EventFields::verbatim`]), in their order: from a JSON event's text,
//! or from an Avro event's JSON form (which formatted its floats already). Either as JSON
//! text, or as that text's JSON string (quoted, escaped), which is how the audit record's JSON
//! carries it: written from the parts, the string costs about what the text does, where
//! escaping the whole text after (a JSON text has an escape every few bytes) costs more than
//! writing it.

use crate::decode::Decoded;
use crate::fields::{EventFields, FieldId, FieldRegistry, FieldValue};
use tollgate_schemas::json::{write_nested_str, write_number, write_str};

/// How the snapshot is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotForm {
    /// JSON text: `{"amount":12.5}`.
    Text,
    /// The JSON string of that text: `"{\"amount\":12.5}"`.
    String,
}

/// The snapshot's field names, ready to write, and which fields are redacted.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    /// Per field id: `"name":`.
    names: Vec<Vec<u8>>,
    /// Per field id: `\"name\":`, the name as it stands in the snapshot's JSON string.
    nested_names: Vec<Vec<u8>>,
    redacted: Vec<bool>,
}

impl SnapshotWriter {
    /// Prepares every registered field; `redacted` fields show `"[redacted]"`.
    pub fn new(registry: &FieldRegistry, redacted: &[FieldId]) -> SnapshotWriter {
        let paths = registry.paths();
        let name = |write: fn(&mut Vec<u8>, &str), path: &str| {
            let mut name = Vec::new();
            write(&mut name, path);
            name.push(b':');
            name
        };
        let names = paths.iter().map(|path| name(write_str, path.as_str())).collect();
        let nested_names = paths.iter().map(|path| name(write_nested_str, path.as_str())).collect();
        let redacted = (0..paths.len()).map(|i| redacted.contains(&FieldId(i))).collect();
        SnapshotWriter { names, nested_names, redacted }
    }

    /// Replaces `out` with the snapshot of `fields` (`{}` when there are none), in `form`;
    /// `source` is the text their runs were recorded in ([`Decoded::verbatim_source`]).
    pub fn write(&self, fields: Option<&EventFields>, source: &[u8], form: SnapshotForm, out: &mut Vec<u8>) {
        out.clear();
        match form {
            SnapshotForm::Text => self.write_object::<false>(fields, source, out),
            SnapshotForm::String => {
                out.push(b'"');
                self.write_object::<true>(fields, source, out);
                out.push(b'"');
            }
        }
    }

    /// [`SnapshotWriter::write`] of a decoded event's fields (`None`: none).
    pub fn write_event(&self, event: Option<&Decoded>, form: SnapshotForm, out: &mut Vec<u8>) {
        match event {
            Some(event) => self.write(Some(&event.fields), event.verbatim_source(), form, out),
            None => self.write(None, b"", form, out),
        }
    }

    /// The object, as text or (`NESTED`) as it stands in a JSON string. One copy of the loop
    /// per form, each with its string writer inlined: the intake's form is on the hot path too.
    fn write_object<const NESTED: bool>(&self, fields: Option<&EventFields>, source: &[u8], out: &mut Vec<u8>) {
        let write_text = |out: &mut Vec<u8>, text: &str| {
            if NESTED {
                write_nested_str(out, text)
            } else {
                write_str(out, text)
            }
        };
        out.push(b'{');
        if let Some(fields) = fields {
            let names = if NESTED { &self.nested_names } else { &self.names };
            let mut first = true;
            // The members the input wrote as the snapshot writes them, copied as they stand,
            // in runs: a few calls instead of two per field. Not into a JSON string: escaping
            // a run's quotes cost more than writing its fields one by one (session 27).
            let verbatim = match fields.verbatim(source) {
                Some(runs) if !NESTED => {
                    for run in runs {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        out.extend_from_slice(run);
                    }
                    true
                }
                _ => false,
            };
            for (i, name) in names.iter().enumerate() {
                let value = fields.get(FieldId(i));
                if matches!(value, FieldValue::Missing) || (verbatim && fields.is_verbatim(FieldId(i))) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(name);
                // Numbers and literals hold nothing a JSON string escapes: the same in both forms.
                match value {
                    _ if self.redacted[i] => write_text(out, "[redacted]"),
                    FieldValue::Number(n) => match fields.number_text(FieldId(i)) {
                        // The input's own text of the number: valid JSON, already checked.
                        Some(text) => out.extend_from_slice(text.as_bytes()),
                        None => write_number(out, n),
                    },
                    FieldValue::Text(s) => write_text(out, s),
                    FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                    FieldValue::Other => write_text(out, "[non-scalar]"),
                    FieldValue::Missing => {}
                }
            }
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn fixture() -> (SnapshotWriter, EventFields<'static>) {
        let mut registry = FieldRegistry::default();
        let paths = ["amount", "merchant.name", "card.number", "flag", "note", "items", "absent", "big", "odd\"key\\"];
        let ids: Vec<FieldId> = paths.iter().map(|p| registry.register(p).unwrap()).collect();
        let writer = SnapshotWriter::new(&registry, &[ids[2]]);
        let fields = EventFields::from_values(vec![
            FieldValue::Number(12.5),
            FieldValue::Text(Cow::Borrowed("Café \"Zur Post\"")),
            FieldValue::Text(Cow::Borrowed("4111111111111111")),
            FieldValue::Bool(true),
            FieldValue::Text(Cow::Borrowed("line\nbreak \\ tab\t\u{1}")),
            FieldValue::Other,
            FieldValue::Missing,
            FieldValue::Number(f64::INFINITY),
            FieldValue::Text(Cow::Borrowed("é")),
        ]);
        (writer, fields)
    }

    #[test]
    fn the_snapshot_is_the_json_object_of_the_fields() {
        let (writer, fields) = fixture();
        let mut out = Vec::new();
        writer.write(Some(&fields), b"", SnapshotForm::Text, &mut out);
        let expected = serde_json::json!({
            "amount": 12.5,
            "merchant.name": "Café \"Zur Post\"",
            "card.number": "[redacted]",
            "flag": true,
            "note": "line\nbreak \\ tab\t\u{1}",
            "items": "[non-scalar]",
            "big": null,
            "odd\"key\\": "é",
        });
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap(), expected);
        // The string form is the text's JSON string, byte for byte.
        let mut string = Vec::new();
        writer.write(Some(&fields), b"", SnapshotForm::String, &mut string);
        assert_eq!(string, serde_json::to_vec(std::str::from_utf8(&out).unwrap()).unwrap());
    }

    #[test]
    fn a_number_read_from_json_text_is_written_as_the_input_wrote_it() {
        let (writer, mut fields) = fixture();
        fields.set_number(0, 12.5, Some("1.250e1"));
        fields.set_number(7, 3.0, None);
        let mut out = Vec::new();
        writer.write(Some(&fields), b"", SnapshotForm::Text, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(r#"{"amount":1.250e1,"#), "{text}");
        assert!(text.contains(r#","big":3.0,"#), "{text}");
    }

    /// A JSON event's members copied as they stand, beside fields written one by one: one
    /// object, whatever the form; a redacted field is never copied.
    #[test]
    fn members_copied_from_a_json_event_make_the_same_object() {
        let mut registry = FieldRegistry::default();
        let paths = ["id", "amount", "note", "card.number", "flag", "items", "secret", "absent"];
        let ids: Vec<FieldId> = paths.iter().map(|p| registry.register(p).unwrap()).collect();
        let redacted = [ids[6]];
        let writer = SnapshotWriter::new(&registry, &redacted);
        let decoder = crate::decode::Decoder::json(registry, &redacted);
        let event = br#"{"id":"e-1", "amount": 1.250e1,"note":"plain","card":{"number":"4111"},"items":[1],"secret":"s","flag":false}"#;
        let mut reuse = crate::decode::Reuse::default();
        reuse.want_verbatim(true);
        let decoded = decoder.decode(event, &mut reuse).unwrap();
        assert!(decoded.fields.verbatim(decoded.verbatim_source()).is_some(), "the scan recorded runs");
        let mut text = Vec::new();
        writer.write_event(Some(&decoded), SnapshotForm::Text, &mut text);
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains(r#""id":"e-1", "amount": 1.250e1,"note":"plain""#), "copied: {text}");
        let expected = serde_json::json!({
            "id": "e-1", "amount": 12.5, "note": "plain", "card.number": "4111", "flag": false,
            "items": "[non-scalar]", "secret": "[redacted]",
        });
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), expected);
        // The string form writes every field one by one: the same object.
        let mut string = Vec::new();
        writer.write_event(Some(&decoded), SnapshotForm::String, &mut string);
        let inner: String = serde_json::from_slice(&string).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&inner).unwrap(), expected);
    }

    /// An Avro event's members copied from its JSON form: the object the snapshot writes field
    /// by field, in either form; integers (a float in the snapshot), decimals (text in the JSON
    /// form), nulls, non-scalars and redacted fields are never copied.
    #[test]
    fn members_copied_from_an_avro_events_json_form_make_the_same_object() {
        use apache_avro::types::Value;
        const SCHEMA: &str = r#"{"type":"record","name":"P","fields":[
            {"name":"id","type":"string"},
            {"name":"n","type":"int"},
            {"name":"big","type":["null","long"]},
            {"name":"amount","type":"double"},
            {"name":"ratio","type":"float"},
            {"name":"ok","type":"boolean"},
            {"name":"note","type":["null","string"]},
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["CARD","WIRE"]}},
            {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
            {"name":"raw","type":"bytes"},
            {"name":"card","type":{"type":"record","name":"Card","fields":[{"name":"country","type":"string"}]}},
            {"name":"secret","type":"string"},
            {"name":"odd","type":"double"},
            {"name":"tags","type":{"type":"array","items":"string"}}]}"#;
        let mut registry = FieldRegistry::default();
        let paths = [
            "id",
            "n",
            "big",
            "amount",
            "ratio",
            "ok",
            "note",
            "kind",
            "price",
            "raw",
            "card.country",
            "secret",
            "odd",
            "card",
            "tags",
        ];
        let ids: Vec<FieldId> = paths.iter().map(|p| registry.register(p).unwrap()).collect();
        let redacted = [ids[11]];
        let writer = SnapshotWriter::new(&registry, &redacted);
        let decoder =
            crate::decode::Decoder::avro(registry, SCHEMA.parse().unwrap(), false, Vec::new(), true, &redacted);
        let schema = apache_avro::Schema::parse_str(SCHEMA).unwrap();
        let union = |v: Option<Value>| match v {
            Some(v) => Value::Union(1, Box::new(v)),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let events = [
            ("e-1", Some(1i64 << 60), Some("plain"), 0.1, f64::NAN),
            ("quote \" é \n", None, None, -2.5e-300, 7.0),
            ("e-3", Some(-3), Some("tab\t"), 1e21, f64::INFINITY),
        ];
        for (id, big, note, amount, odd) in events {
            let datum = apache_avro::to_avro_datum(
                &schema,
                Value::Record(vec![
                    ("id".into(), Value::String(id.into())),
                    ("n".into(), Value::Int(-7)),
                    ("big".into(), union(big.map(Value::Long))),
                    ("amount".into(), Value::Double(amount)),
                    ("ratio".into(), Value::Float(0.3)),
                    ("ok".into(), Value::Boolean(true)),
                    ("note".into(), union(note.map(|n| Value::String(n.into())))),
                    ("kind".into(), Value::Enum(1, "WIRE".into())),
                    ("price".into(), Value::Decimal(apache_avro::Decimal::from([0x04, 0xd2]))),
                    ("raw".into(), Value::Bytes(vec![1, 2])),
                    ("card".into(), Value::Record(vec![("country".into(), Value::String("DE".into()))])),
                    ("secret".into(), Value::String("s".into())),
                    ("odd".into(), Value::Double(odd)),
                    ("tags".into(), Value::Array(vec![Value::String("t".into())])),
                ]),
            )
            .unwrap();
            let snapshot = |runs: bool, form: SnapshotForm| {
                let mut reuse = crate::decode::Reuse::default();
                reuse.want_verbatim(runs);
                let decoded = decoder.decode(&datum, &mut reuse).unwrap();
                assert_eq!(decoded.fields.verbatim(decoded.verbatim_source()).is_some(), runs, "{id:?}");
                let mut out = Vec::new();
                writer.write_event(Some(&decoded), form, &mut out);
                let text = match form {
                    SnapshotForm::Text => String::from_utf8(out).unwrap(),
                    SnapshotForm::String => serde_json::from_slice(&out).unwrap(),
                };
                (serde_json::from_str::<serde_json::Value>(&text).unwrap(), text)
            };
            let (copied, text) = snapshot(true, SnapshotForm::Text);
            assert!(text.contains(r#""amount":"#) && text.contains(r#""ok":true,"note":"#) == note.is_some(), "{text}");
            assert_eq!(copied, snapshot(false, SnapshotForm::Text).0, "{id:?}: {text}");
            assert_eq!(copied, snapshot(true, SnapshotForm::String).0, "{id:?}");
            assert_eq!(copied["secret"], "[redacted]");
            assert_eq!(copied["price"], 12.34);
            assert_eq!(copied["n"], -7.0);
            assert_eq!(copied["card"], "[non-scalar]");
        }
    }

    #[test]
    fn no_fields_is_an_empty_object() {
        let (writer, _) = fixture();
        let mut out = b"stale".to_vec();
        writer.write(None, b"", SnapshotForm::Text, &mut out);
        assert_eq!(out, b"{}");
        writer.write(None, b"", SnapshotForm::String, &mut out);
        assert_eq!(out, br#""{}""#);
    }
}
