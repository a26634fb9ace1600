//! The audit record's input snapshot: a JSON object of the event fields the decision read, with
//! configured fields redacted.
//!
//! The snapshot is a string field of the audit record. In the Avro audit record it is that JSON
//! text as is; in the JSON audit record it is the same text escaped as a JSON string, which is
//! where escaping it a second time used to cost a fifth of the hot path. So the writer here
//! writes either form straight from the extracted fields: structural quotes and field names come
//! ready-made, numbers and booleans need no escaping at either level, and only text values are
//! escaped, in one pass when they hold nothing to escape (the usual case).

use crate::fields::{EventFields, FieldId, FieldRegistry, FieldValue};

/// Which form of the snapshot to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The JSON text of the object.
    Plain,
    /// That text escaped as the contents of a JSON string (without the enclosing quotes).
    Escaped,
}

/// The snapshot's field names, ready to write in both forms, and which fields are redacted.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    /// Per field id: `"name":` as JSON text, and the same escaped.
    names: Vec<[String; 2]>,
    redacted: Vec<bool>,
}

impl SnapshotWriter {
    /// Prepares every registered field; `redacted` fields show `"[redacted]"`.
    pub fn new(registry: &FieldRegistry, redacted: &[FieldId]) -> SnapshotWriter {
        let names = registry
            .paths()
            .iter()
            .map(|path| {
                let mut plain = Vec::new();
                put_text(&mut plain, path.as_str(), Form::Plain);
                plain.push(b':');
                let mut escaped = Vec::new();
                put_text(&mut escaped, path.as_str(), Form::Escaped);
                escaped.push(b':');
                // Both are JSON text built from a `str`.
                [String::from_utf8(plain).unwrap_or_default(), String::from_utf8(escaped).unwrap_or_default()]
            })
            .collect();
        let redacted = (0..registry.paths().len()).map(|i| redacted.contains(&FieldId(i))).collect();
        SnapshotWriter { names, redacted }
    }

    /// Replaces `out` with the snapshot of `fields` in `form` (`{}` when there are none).
    pub fn write(&self, fields: Option<&EventFields>, form: Form, out: &mut Vec<u8>) {
        out.clear();
        out.push(b'{');
        if let Some(fields) = fields {
            let mut first = true;
            for (i, names) in self.names.iter().enumerate() {
                let value = fields.get(FieldId(i));
                if matches!(value, FieldValue::Missing) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(names[form as usize].as_bytes());
                match value {
                    _ if self.redacted[i] => put_text(out, "[redacted]", form),
                    FieldValue::Number(n) => put_number(out, *n),
                    FieldValue::Text(s) => put_text(out, s, form),
                    FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                    FieldValue::Other => put_text(out, "[non-scalar]", form),
                    FieldValue::Missing => {}
                }
            }
        }
        out.push(b'}');
    }
}

/// A number as serde_json writes an `f64` (`null` when it is not finite).
fn put_number(out: &mut Vec<u8>, n: f64) {
    // Writing an f64 to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &n);
}

/// A JSON string of `text` (with its quotes), in `form`.
fn put_text(out: &mut Vec<u8>, text: &str, form: Form) {
    let plain_safe = !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    match (form, plain_safe) {
        (Form::Plain, true) => {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        (Form::Escaped, true) => {
            out.extend_from_slice(br#"\""#);
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(br#"\""#);
        }
        (Form::Plain, false) => {
            let _ = serde_json::to_writer(&mut *out, text);
        }
        (Form::Escaped, false) => {
            // Rare (quotes, backslashes or control characters in a field): escape twice, the
            // second time without the outer quotes the audit record's encoder adds.
            let once = serde_json::to_string(text).unwrap_or_default();
            let twice = serde_json::to_string(&once).unwrap_or_default();
            out.extend_from_slice(&twice.as_bytes()[1..twice.len() - 1]);
        }
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
    fn the_plain_form_is_the_json_object_of_the_fields() {
        let (writer, fields) = fixture();
        let mut out = Vec::new();
        writer.write(Some(&fields), Form::Plain, &mut out);
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
    fn the_escaped_form_is_what_a_json_encoder_writes_for_the_plain_text() {
        let (writer, fields) = fixture();
        let (mut plain, mut escaped) = (Vec::new(), Vec::new());
        writer.write(Some(&fields), Form::Plain, &mut plain);
        writer.write(Some(&fields), Form::Escaped, &mut escaped);
        let encoded = serde_json::to_string(std::str::from_utf8(&plain).unwrap()).unwrap();
        assert_eq!(std::str::from_utf8(&escaped).unwrap(), &encoded[1..encoded.len() - 1]);
    }

    #[test]
    fn no_fields_is_an_empty_object() {
        let (writer, _) = fixture();
        let mut out = b"stale".to_vec();
        writer.write(None, Form::Escaped, &mut out);
        assert_eq!(out, b"{}");
    }
}
