//! The audit record's input snapshot: a JSON object of the event fields the decision read, with
//! configured fields redacted.
//!
//! Written straight from the extracted fields, once per event: field names come ready-made, and
//! text values are copied as they are unless they hold something to escape.

use crate::fields::{EventFields, FieldId, FieldRegistry, FieldValue};
use tollgate_schemas::json::{write_number, write_str};

/// The snapshot's field names, ready to write, and which fields are redacted.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    /// Per field id: `"name":`.
    names: Vec<Vec<u8>>,
    redacted: Vec<bool>,
}

impl SnapshotWriter {
    /// Prepares every registered field; `redacted` fields show `"[redacted]"`.
    pub fn new(registry: &FieldRegistry, redacted: &[FieldId]) -> SnapshotWriter {
        let names = registry
            .paths()
            .iter()
            .map(|path| {
                let mut name = Vec::new();
                write_str(&mut name, path.as_str());
                name.push(b':');
                name
            })
            .collect();
        let redacted = (0..registry.paths().len()).map(|i| redacted.contains(&FieldId(i))).collect();
        SnapshotWriter { names, redacted }
    }

    /// Replaces `out` with the snapshot of `fields` (`{}` when there are none).
    pub fn write(&self, fields: Option<&EventFields>, out: &mut Vec<u8>) {
        out.clear();
        out.push(b'{');
        if let Some(fields) = fields {
            let mut first = true;
            for (i, name) in self.names.iter().enumerate() {
                let value = fields.get(FieldId(i));
                if matches!(value, FieldValue::Missing) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(name);
                match value {
                    _ if self.redacted[i] => write_str(out, "[redacted]"),
                    FieldValue::Number(n) => match fields.number_text(FieldId(i)) {
                        // The input's own text of the number: valid JSON, already checked.
                        Some(text) => out.extend_from_slice(text.as_bytes()),
                        None => write_number(out, n),
                    },
                    FieldValue::Text(s) => write_str(out, s),
                    FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                    FieldValue::Other => write_str(out, "[non-scalar]"),
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
        let paths = ["amount", "merchant.name", "card.number", "flag", "note", "items", "absent", "big"];
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
        ]);
        (writer, fields)
    }

    #[test]
    fn the_snapshot_is_the_json_object_of_the_fields() {
        let (writer, fields) = fixture();
        let mut out = Vec::new();
        writer.write(Some(&fields), &mut out);
        let expected = serde_json::json!({
            "amount": 12.5,
            "merchant.name": "Café \"Zur Post\"",
            "card.number": "[redacted]",
            "flag": true,
            "note": "line\nbreak \\ tab\t\u{1}",
            "items": "[non-scalar]",
            "big": null,
        });
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap(), expected);
    }

    #[test]
    fn a_number_read_from_json_text_is_written_as_the_input_wrote_it() {
        let (writer, mut fields) = fixture();
        fields.set_number(0, 12.5, Some("1.250e1"));
        fields.set_number(7, 3.0, None);
        let mut out = Vec::new();
        writer.write(Some(&fields), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(r#"{"amount":1.250e1,"#), "{text}");
        assert!(text.ends_with(r#","big":3.0}"#), "{text}");
    }

    #[test]
    fn no_fields_is_an_empty_object() {
        let (writer, _) = fixture();
        let mut out = b"stale".to_vec();
        writer.write(None, &mut out);
        assert_eq!(out, b"{}");
    }
}
